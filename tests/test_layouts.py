"""Every data layout users bring, as tiny generated fixtures; `data check`; groups and folds."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, write_pair
from PIL import Image
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.data.cache import build_cache
from polypseg.data.check import check_data
from polypseg.data.errors import DataError
from polypseg.data.groups import apply_groups
from polypseg.data.sources import discover, discover_all, read_sample
from polypseg.data.split import make_split


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _img(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = 24, w: int = 32, value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[4:12, 6:20] = value
    return m


def test_clinicdb_layout_with_tiff(tmp_path: Path) -> None:
    root = tmp_path / "CVC-ClinicDB"
    for i in (1, 2, 10):
        _write(root / "Original" / f"{i}.tif", _img(i))
        _write(root / "Ground Truth" / f"{i}.tif", _mask())
    samples = discover(root)
    assert [s.id for s in samples] == ["CVC-ClinicDB/1", "CVC-ClinicDB/10", "CVC-ClinicDB/2"]
    image, mask = read_sample(samples[0])
    assert image.shape == (24, 32, 3) and mask.sum() == 8 * 14


def test_pranet_layout(tmp_path: Path) -> None:
    root = tmp_path / "pranet"
    for i in range(4):
        _write(root / "TrainDataset" / "image" / f"t{i}.png", _img(i))
        _write(root / "TrainDataset" / "mask" / f"t{i}.png", _mask())
    for name in ("Kvasir", "CVC-300"):
        for i in range(2):
            _write(root / "TestDataset" / name / "images" / f"{name}{i}.png", _img(i))
            _write(root / "TestDataset" / name / "masks" / f"{name}{i}.png", _mask())
    samples = discover(root)
    assert sum(s.split == "train" for s in samples) == 4
    assert {s.source for s in samples if s.split == "test"} == {"Kvasir", "CVC-300"}
    split = make_split(samples, val_fraction=0.25, seed=0)
    assert len(split["test"]) == 4 and len(split["val"]) == 1 and len(split["train"]) == 3


def test_polypgen_layout_groups_by_centre(tmp_path: Path) -> None:
    root = tmp_path / "PolypGen"
    for c in ("C1", "C2"):
        for i in range(5):
            _write(root / f"images_{c}" / f"{c}_{i}.jpg", _img(i))
            _write(root / f"masks_{c}" / f"{c}_{i}_mask.jpg", _mask())
    samples = discover(root)
    assert len(samples) == 10 and {s.group for s in samples} == {"C1", "C2"}
    _, mask = read_sample(samples[0])
    assert set(np.unique(mask)) <= {0, 1}
    split = make_split(samples, 0.4, 0.0, seed=0)
    assert {s.group for s in samples if s.id in split["val"]} in ({"C1"}, {"C2"})


def test_npz_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
        arrays[f"{split}_label"] = (rng.random((n, 16, 16)) > 0.7).astype(np.uint8)
    np.savez_compressed(tmp_path / "polypgenmsbench.npz", **arrays)
    samples = discover(tmp_path / "polypgenmsbench.npz")
    assert [sum(s.split == k for s in samples) for k in ("train", "val", "test")] == [6, 2, 3]
    image, mask = read_sample(samples[7])  # val row 1
    assert np.array_equal(image, arrays["val_images"][1]) and np.array_equal(mask, arrays["val_label"][1])
    cached = build_cache(samples, 8)
    assert cached.images.shape == (11, 8, 8, 3)
    gray = {"train_images": arrays["train_images"][..., 0], "train_label": arrays["train_label"]}
    np.savez(tmp_path / "gray.npz", **gray)
    assert read_sample(discover(tmp_path / "gray.npz")[0])[0].shape == (16, 16, 3)


def test_npz_problems_are_named(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "bad.npz",
        train_images=np.zeros((3, 8, 8, 3), np.uint8),
        train_label=np.zeros((2, 8, 8), np.uint8),
    )
    with pytest.raises(DataError, match="differ in N"):
        discover(tmp_path / "bad.npz")
    np.savez(tmp_path / "nolabel.npz", train_images=np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="train_label"):
        discover(tmp_path / "nolabel.npz")


def test_check_reports_all_problems_at_once(tmp_path: Path) -> None:
    root = tmp_path / "messy"
    for i in range(4):
        write_pair(root, f"ok{i}", seed=i)
    (root / "images" / "ok1.png").write_bytes(b"\x89PNG broken")  # corrupt image
    (root / "masks" / "ok2.png").unlink()  # missing mask
    cv2.imwrite(str(root / "masks" / "ok3.png"), np.zeros((10, 10), np.uint8))  # size mismatch
    report = check_data([str(root)])
    text = "\n".join(report.problems)
    assert not report.usable and len(report.problems) == 3
    assert "ok1.png" in text and "image without mask" in text and "ok2.png" in text
    assert "size mismatch" in text and "ok3.png" in text
    res = CliRunner().invoke(app, ["data", "check", str(root)])
    assert res.exit_code == 2  # bad input, as every refusal
    assert "ok1.png" in res.output and "ok2.png" in res.output and "ok3.png" in res.output


def test_check_counts_and_notes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            _write(root / split / "images" / f"{split}{i}.png", _img(i)[..., 0])  # grayscale image
            _write(root / split / "masks" / f"{split}{i}.png", _mask() if i else np.zeros((24, 32), np.uint8))
    r = check_data([str(root)])
    assert r.usable and r.n_pairs == 5
    assert r.counts == {"ds train": 3, "ds val": 2}
    assert r.empty_masks == 2 and r.width_range == (32, 32)
    assert r.note_counts == {"image mode L converted": 5}
    res = CliRunner().invoke(app, ["data", "check", str(root)])
    assert res.exit_code == 0 and "usable" in res.output


def test_group_regex_and_csv(pair_folder: Path, tmp_path: Path) -> None:
    samples = discover(pair_folder)  # stems img00 .. img09
    grouped = apply_groups(samples, regex=r"img0([0-4])")
    assert grouped[0].group == "0" and grouped[9].group is None
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text("stem,patient\n" + "".join(f"img{i:02d},p{i // 2}\n" for i in range(10)))
    by_csv = apply_groups(samples, csv_spec=f"{csv_file}:patient")
    assert [s.group for s in by_csv] == [f"p{i // 2}" for i in range(10)]
    split = make_split(by_csv, 0.2, 0.2, seed=3)
    for k in split:
        for j in split:
            if j != k:
                assert not {s.group for s in by_csv if s.id in split[k]} & {s.group for s in by_csv if s.id in split[j]}
    with pytest.raises(DataError, match="matches no file"):
        apply_groups(samples, regex="xyz")
    with pytest.raises(DataError, match="stem"):
        apply_groups(samples, csv_spec=f"{csv_file}:centre")


def test_folds_partition_train_and_val(pair_folder: Path) -> None:
    samples = discover(pair_folder)
    vals = []
    for k in range(1, 6):
        s = make_split(samples, 0.2, 0.2, seed=0, fold=f"{k}/5")
        assert len(s["test"]) == 2 and len(s["val"]) + len(s["train"]) == 8
        vals += s["val"]
        assert s["test"] == make_split(samples, 0.2, 0.2, seed=0)["test"]
    assert sorted(vals) == sorted(set(vals)) and len(vals) == 8  # each non-test sample validated once
    with pytest.raises(ValueError, match="k/K"):
        make_split(samples, fold="3")


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "polypgen").exists(), reason="../shared/data is absent")
def test_shared_data_smoke() -> None:
    polypgen = discover(SHARED_DATA / "polypgen")
    assert sum(s.split == "train" for s in polypgen) == 984 and sum(s.split == "val" for s in polypgen) == 140
    kvasir = discover(SHARED_DATA / "polyp-train" / "kvasir")
    clinic = discover(SHARED_DATA / "polyp-train" / "clinicdb")
    assert len(kvasir) == 900 and len(clinic) == 550
    image, mask = read_sample(kvasir[0])
    assert image.shape[:2] == mask.shape and mask.max() == 1


def test_palette_images_and_masks(tmp_path: Path) -> None:
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    Image.fromarray(_img(4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(
        tmp_path / "d" / "images" / "a.png"
    )
    mask = Image.fromarray((_mask() > 0).astype(np.uint8), mode="L").convert("P")
    mask.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    mask.save(tmp_path / "d" / "masks" / "a.png")
    report = check_data([str(tmp_path / "d")])
    assert report.usable and report.note_counts == {"image mode P converted": 1}
    image, m = read_sample(discover(tmp_path / "d")[0])
    assert image.shape == (24, 32, 3) and m.sum() == 8 * 14  # palette index 1 is the polyp


def test_multilabel_masks_need_named_labels(tmp_path: Path) -> None:
    root = tmp_path / "ml"
    labels = np.zeros((24, 32), np.uint8)
    labels[2:6, 2:6] = 1
    labels[10:20, 10:20] = 2
    _write(root / "images" / "x.png", _img(1))
    _write(root / "masks" / "x.png", labels)
    assert not check_data([str(root)]).usable
    assert check_data([str(root)], foreground_labels=[2]).usable
    (s,) = discover_all([root], foreground_labels=[1, 2])
    assert read_sample(s)[1].sum() == 16 + 100
    res = CliRunner().invoke(app, ["data", "check", str(root), "--foreground-labels", "2"])
    assert res.exit_code == 0, res.output


def test_split_folders_may_reuse_a_file_name(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _write(root / "train" / "images" / "0.png", _img(1))
    _write(root / "train" / "masks" / "0.png", _mask())
    _write(root / "test" / "images" / "0.png", _img(2))
    _write(root / "test" / "masks" / "0.png", _mask(value=1))
    samples = discover_all([root])  # 0.png in both splits used to clash as "two sources"
    assert [(s.id, s.split) for s in samples] == [("ds/test/0", "test"), ("ds/train/0", "train")]
    assert np.array_equal(read_sample(samples[0])[0], _img(2)) and np.array_equal(read_sample(samples[1])[0], _img(1))


def test_split_folders_report_unknown_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val", "training"):
        _write(root / split / "images" / f"{split}.png", _img(0))
        _write(root / split / "masks" / f"{split}.png", _mask())
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("x")
    warned = r"ignored sub-folder\(s\) holding no image folder \+ mask folder: notes"
    with pytest.warns(UserWarning, match=warned), pytest.raises(DataError) as err:
        discover(root)
    msg = str(err.value)
    assert f"{root / 'training'}: holds an image folder and a mask folder, but 'training' is not a split" in msg
    assert "train, val (or validation, valid), test" in msg
    problems: list[str] = []
    with pytest.warns(UserWarning, match="notes"):
        assert [s.id for s in discover(root, problems=problems)] == ["ds/train/train", "ds/val/val"]
    assert len(problems) == 1 and "'training'" in problems[0]


def test_pair_subfolders_without_split_names_are_named(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for sub in ("training", "Test1"):
        _write(root / sub / "images" / "a.png", _img(0))
        _write(root / sub / "masks" / "a.png", _mask())
    with pytest.raises(DataError, match="no known data layout") as err:
        discover(root)
    assert "the sub-folder(s) Test1, training hold images and masks" in str(err.value)
    assert "name them train, val (or validation, valid) and test" in str(err.value)
