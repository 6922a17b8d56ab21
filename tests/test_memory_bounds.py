"""Memory bounds: NPZ arrays are decompressed once per pass and only one file's are held; the cache writes
its rows straight to disk; videos get the image pixel limit before a frame is decoded (issue #14 item 5)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.data import io as data_io
from polypseg.data import sources
from polypseg.data.cache import build_cache
from polypseg.data.errors import DataError
from polypseg.data.fingerprint import fingerprints
from polypseg.data.sample import Sample
from polypseg.data.sources import discover, read_sample
from polypseg.inference.predict import predict
from polypseg.preprocess import resize_pair

KEYS = [f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "label")]


def _npz(path: Path, seed: int = 0, n: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
        arrays[f"{split}_label"] = (rng.random((n, 12, 12)) > 0.6).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture
def decompressed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[tuple[str, str]]]:
    """Counts ``(file name, array name)`` decompressions from now on (none are held when the test starts)."""
    counts: Counter[tuple[str, str]] = Counter()
    real = sources._decompress

    def counting(path: Path, key: str) -> np.ndarray:
        counts[(path.name, key)] += 1
        return real(path, key)

    sources.release_npz_arrays()
    monkeypatch.setattr(sources, "_decompress", counting)
    yield counts
    sources.release_npz_arrays()


def test_each_npz_array_is_decompressed_once_per_pass(tmp_path: Path, decompressed: Counter) -> None:
    arrays = _npz(tmp_path / "set.npz")
    samples = discover(tmp_path / "set.npz")
    assert len(samples) == 12
    for s in samples:
        image, mask = read_sample(s)
        assert np.array_equal(image, arrays[f"{s.split}_images"][s.index])
        assert np.array_equal(mask, arrays[f"{s.split}_label"][s.index])
        assert image.flags.owndata  # a copy: keeping a row does not keep the whole decoded array
    assert decompressed == Counter({("set.npz", k): 1 for k in KEYS})
    fingerprints(samples)  # reuses the arrays still held, then lets them go
    assert decompressed == Counter({("set.npz", k): 1 for k in KEYS})
    read_sample(samples[0])
    assert decompressed[("set.npz", "train_images")] == 2  # released: read again
    sources.release_npz_arrays()
    decompressed.clear()
    cached = build_cache(samples, 8, root=tmp_path / "cache")
    assert decompressed == Counter({("set.npz", k): 1 for k in KEYS})
    expected = [resize_pair(*read_sample(s), 8) for s in samples]
    assert decompressed[("set.npz", "train_images")] == 2  # the build let its arrays go when it ended
    assert np.array_equal(cached.images, np.stack([e[0] for e in expected]))
    assert np.array_equal(cached.masks, np.stack([e[1] for e in expected]))
    assert build_cache(samples, 8, root=tmp_path / "cache").images.shape == (12, 8, 8, 3)  # found, not rebuilt
    assert decompressed[("set.npz", "train_images")] == 2


def test_only_one_npz_file_is_held_and_a_changed_file_is_read_again(tmp_path: Path, decompressed: Counter) -> None:
    _npz(tmp_path / "a.npz", seed=1)
    _npz(tmp_path / "b.npz", seed=2)
    a, b = discover(tmp_path / "a.npz")[0], discover(tmp_path / "b.npz")[0]
    for s in (a, a, b, a):
        read_sample(s)
    assert decompressed[("a.npz", "train_images")] == 2 and decompressed[("b.npz", "train_images")] == 1
    new = _npz(tmp_path / "a.npz", seed=3, n=5)  # rewritten (new size): the held arrays are stale
    assert np.array_equal(read_sample(a)[0], new["train_images"][0])


def test_a_damaged_npz_array_is_a_data_error_naming_the_file_tried_once(tmp_path: Path, decompressed: Counter) -> None:
    path = tmp_path / "broken.npz"
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)  # does not compress
    np.savez_compressed(path, train_images=images, train_label=np.zeros((4, 64, 64), np.uint8))
    data = bytearray(path.read_bytes())
    start = data.index(b"train_images.npy") + 200  # inside that member's compressed bytes
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    sample = Sample(id="broken/train/00000", image=path, mask=path, source="broken", split="train", index=0)
    for _ in range(2):
        with pytest.raises(DataError, match=r"broken\.npz: cannot read the array 'train_images'"):
            read_sample(sample)
    assert decompressed[("broken.npz", "train_images")] == 1  # the error is remembered, not retried per row


def _video(path: Path, frames: int = 3, size: tuple[int, int] = (96, 80)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()
    assert path.stat().st_size > 0
    return path


class _CountingCapture:
    """``cv2.VideoCapture`` that counts the frames decoded (``read`` calls)."""

    reads = 0

    def __init__(self, *args: object) -> None:
        self._cap = _REAL_CAPTURE(*args)

    def read(self) -> tuple[bool, np.ndarray]:
        type(self).reads += 1
        return self._cap.read()

    def __getattr__(self, name: str) -> object:
        return getattr(self._cap, name)


_REAL_CAPTURE = cv2.VideoCapture


def test_a_video_above_the_image_pixel_limit_is_refused_before_a_frame_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = _video(tmp_path / "clip.avi")
    monkeypatch.setattr(data_io, "MAX_PIXELS", 96 * 80 - 1)
    monkeypatch.setattr(cv2, "VideoCapture", _CountingCapture)
    _CountingCapture.reads = 0
    with pytest.raises(DataError, match=r"clip\.avi has frames of 96x80 = 7680 pixels, above the limit of 7679"):
        predict("polyp-unet16", [video], tmp_path / "out")
    assert _CountingCapture.reads == 0
    assert not list((tmp_path / "out").glob("clip*"))
    res = CliRunner().invoke(app, ["predict", "polyp-unet16", str(video), "--out", str(tmp_path / "cli")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "clip.avi" in text and "96x80" in text and "7679" in text and "downscale" in text
    monkeypatch.setattr(data_io, "MAX_PIXELS", 96 * 80)  # at the limit: accepted
    written = predict("polyp-unet16", [video], tmp_path / "ok")
    assert [p.name for p in written] == ["clip_frames.csv"] and _CountingCapture.reads >= 3


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_an_unreadable_video_is_a_clear_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    video = tmp_path / "bad.avi"
    if kind == "garbage":
        video.write_bytes(bytes(range(256)) * 16)
    elif kind == "truncated":
        good = _video(tmp_path / "good.avi").read_bytes()
        video.write_bytes(good[:300])  # the container's header, no whole frame
    else:
        video.write_bytes(b"")
    res = CliRunner().invoke(app, ["predict", "polyp-unet16", str(video), "--out", str(tmp_path / "out")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "bad.avi" in text and ("cannot open video" in text or "no frame that can be decoded" in text)


def test_discovery_reads_only_the_npy_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery checks each split's shapes and dtypes from the ``.npy`` headers: no array is decompressed
    (the issue: NPZ sources were decompressed in discovery and again by the cache)."""
    _npz(tmp_path / "set.npz", n=5)
    loaded: list[str] = []
    real = np.lib.npyio.NpzFile.__getitem__

    def counting(self, key):
        loaded.append(key)
        return real(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", counting)
    samples = discover(tmp_path / "set.npz")
    assert len(samples) == 15 and loaded == []
    bad = tmp_path / "objects.npz"
    np.savez(bad, train_images=np.array([object()] * 2, dtype=object), train_label=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="hold Python objects"):
        discover(bad)
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, train_images=np.zeros((4, 8, 8, 3), np.uint8), train_label=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"\(4, 8, 8, 3\) and train_label \(3, 8, 8\) differ in N"):
        discover(mismatch)
    assert loaded == []


def test_an_npz_whose_header_claims_more_than_it_stores_or_too_many_pixels_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: discovery read shapes from headers but checked neither the pixel limit nor that the
    archive stores what the header claims, so an NPZ 'bomb' reached the cache build (out of memory)."""
    import zipfile

    lying = tmp_path / "lying.npz"
    np.savez(lying, train_images=np.zeros((2, 8, 8, 3), np.uint8), train_label=np.zeros((2, 8, 8), np.uint8))
    with zipfile.ZipFile(lying) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = members["train_images.npy"]
    members["train_images.npy"] = header.replace(b"(2, 8, 8, 3)", b"(2000, 8, 8, 3)")  # the header lies
    with zipfile.ZipFile(lying, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(
        DataError, match=r"header claims \(2000, 8, 8, 3\) uint8 \(384000 bytes\) but the archive stores"
    ):
        discover(lying)
    monkeypatch.setattr(data_io, "MAX_PIXELS", 63)
    from polypseg.data import layouts

    monkeypatch.setattr(layouts, "MAX_PIXELS", 63)
    big = tmp_path / "big.npz"
    np.savez(big, train_images=np.zeros((2, 8, 8, 3), np.uint8), train_label=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match="8x8 = 64 pixels, above the limit of 63"):
        discover(big)
