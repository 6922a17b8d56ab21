"""The hostile-input corpus (issue #14): files a user may feed polypseg by mistake or by malice, each
generated here, run through every command that could meet it (``data check``, ``train``, ``evaluate``,
``predict``, ``serve`` and the served ``POST /predict``).

Each case states its outcome. *Refused*: exit code 2 (``data check``: :data:`CHECK_REFUSED_EXIT`), the
message names the offending file and says what is wrong, no traceback, no "unexpected error", nothing
half-written, and the same command run again gives the same answer. *Accepted*: exit code 0, and where the
file had to be converted ``data check`` prints the counted note (``note: 1 file(s): <kind>``). The table
of cases is in docs/reliability.md ("Hostile-input corpus").
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from conftest import write_pair
from PIL import Image
from typer.testing import CliRunner, Result

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.paths import cache_root

pytestmark = pytest.mark.slow

#: ``polypseg data check`` reports problems with exit code 1 (cli/data_cmds.py); every other refusal is 2.
CHECK_REFUSED_EXIT = 2
H, W = 24, 32
#: The training settings of every ``train`` here: one epoch of a tiny U-Net at 32 px.
TINY_RECIPE = "name: tiny\nmodel: {name: unet, args: {base: 4, depth: 2}}\ndata: {augment: none}\nprecision: '32'\n"
#: Advice no refusal may pass on from a library: each would load a hostile file in a way that can run code.
UNSAFE_ADVICE = ("add_safe_globals", "weights_only` set to `False", "allow_pickle=True", "load it unsafely")
TRAIN_OPTS = ["--epochs", "1", "--size", "32", "--batch-size", "2", "--no-progress", "--no-tune"]


# --- generators: every hostile file is made here, small, from nothing on disk ------------------------


def _rgb(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = H, w: int = W, high: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : h // 2 + 1, w // 4 : w // 2 + 1] = high
    return m


def _encoded(arr: np.ndarray | Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    (arr if isinstance(arr, Image.Image) else Image.fromarray(arr)).save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour: int, idat: bytes) -> bytes:
    """A PNG written by hand: signature, IHDR (any size it claims), one IDAT, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _bomb(side: int = 9000) -> bytes:
    """A 1-bit grey PNG of side x side black pixels: about 10 kB that decodes to 81 Mpixels."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed pixels
    z = zlib.compressobj(9)
    return _png(side, side, 1, 0, b"".join(z.compress(row) for _ in range(side)) + z.flush())


class _RunsCode:
    """Unpickling this would create ``self.marker`` (a stand-in for any code an attacker could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@dataclass
class Built:
    """What a case made: ``data`` for check / train / evaluate, ``file`` for predict and the served
    ``POST /predict``, a hostile ``recipe`` or ``model`` (checkpoint), and a ``marker`` that must never appear."""

    data: Path | None = None
    file: Path | None = None
    recipe: Path | None = None
    model: Path | None = None
    marker: Path | None = None


def _padded(tmp: Path, name: str, n: int = 5) -> Path:
    """``tmp/name`` with ``n`` good pairs, so the one bad file decides the outcome."""
    root = tmp / name
    for i in range(n):
        write_pair(root, f"good{i}", size=(H, W), seed=i)
    return root


def _image_case(
    name: str, write: Callable[[Path], None], mask_size: tuple[int, int] = (H, W)
) -> Callable[[Path, Path], Built]:
    """A padded folder whose ``images/name`` is written by ``write`` (its mask is good)."""

    def build(tmp: Path, run: Path) -> Built:
        root = _padded(tmp, "suspect")
        path = root / "images" / name
        write(path)
        cv2.imwrite(str(root / "masks" / f"{Path(name).stem}.png"), _mask(*mask_size))
        return Built(data=root, file=path)

    return build


def _mask_case(name: str, write: Callable[[Path], None]) -> Callable[[Path, Path], Built]:
    """A padded folder whose ``masks/name`` is written by ``write`` (its image is good)."""

    def build(tmp: Path, run: Path) -> Built:
        root = _padded(tmp, "suspect")
        cv2.imwrite(str(root / "images" / f"{Path(name).stem}.png"), _rgb(9))
        write(root / "masks" / name)
        return Built(data=root, file=root / "masks" / name)

    return build


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _pil(img: Callable[[], Image.Image], fmt: str = "PNG") -> Callable[[Path], None]:
    return lambda path: img().save(path, fmt)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _folder(kind: str) -> Callable[[Path, Path], Built]:
    def build(tmp: Path, run: Path) -> Built:
        root = tmp / "suspect"
        root.mkdir()
        for sub in ("images", "masks") if kind != "empty" else ():
            if not (sub == "masks" and kind == "images_only"):
                (root / sub).mkdir()
        for i in range(3):
            if kind in ("images_only", "images_no_masks"):
                cv2.imwrite(str(root / "images" / f"lonely{i}.png"), _rgb(i))
            if kind == "masks_no_images":
                cv2.imwrite(str(root / "masks" / f"lonely{i}.png"), _mask())
        return Built(data=root)

    return build


def _extra_files(files: dict[str, bytes | None]) -> Callable[[Path, Path], Built]:
    """A padded folder plus ``files`` (relative path -> bytes; None: an image or mask of the right size)."""

    def build(tmp: Path, run: Path) -> Built:
        root = _padded(tmp, "suspect")
        for rel, data in files.items():
            path = root / rel
            if data is None:
                cv2.imwrite(str(path), _mask() if rel.startswith("masks") else _rgb(7))
            else:
                path.write_bytes(data)
        return Built(data=root, file=root / "images")

    return build


def _symlink(target: str | None) -> Callable[[Path, Path], Built]:
    def build(tmp: Path, run: Path) -> Built:
        root = _padded(tmp, "suspect")
        link = root / "images" / "link.png"
        os.symlink(target or link.name, link)  # None: the link points at itself
        cv2.imwrite(str(root / "masks" / "link.png"), _mask())
        return Built(data=root, file=link)

    return build


def _odd_name(tmp: Path, run: Path) -> Built:
    root = _padded(tmp, "suspect")
    name = "-pólipo ñ 01"  # a leading dash, non-ASCII letters and spaces
    cv2.imwrite(str(root / "images" / f"{name}.png"), _rgb(8))
    cv2.imwrite(str(root / "masks" / f"{name}.png"), _mask())
    return Built(data=root, file=root / "images" / f"{name}.png")


def _dir_named_png(tmp: Path, run: Path) -> Built:
    root = _padded(tmp, "suspect")
    (root / "images" / "folder.png").mkdir()
    (root / "masks" / "folder.png").mkdir()
    return Built(data=root, file=root / "images")


def _npz(kind: str) -> Callable[[Path, Path], Built]:
    def build(tmp: Path, run: Path) -> Built:
        path = tmp / "hostile.npz"
        images, labels = np.zeros((4, 16, 16, 3), np.uint8), (np.arange(4 * 256).reshape(4, 16, 16) % 2)
        if kind == "garbage":
            path.write_bytes(b"\x13\x37 not an archive " * 16)
        elif kind == "mismatch":  # four images, three labels
            np.savez(path, train_images=images, train_label=labels[:3].astype(np.uint8))
        elif kind == "objects":  # an object array: reading it would unpickle
            np.savez(path, train_images=np.array([None] * 4, dtype=object), train_label=labels.astype(np.uint8))
        elif kind == "npy":
            with open(path, "wb") as fh:
                np.save(fh, images)
        else:  # truncated: a good archive cut half-way
            np.savez(path, train_images=images, train_label=labels.astype(np.uint8))
            path.write_bytes(_half(path.read_bytes()))
        return Built(data=path)

    return build


def _recipe(text: str | bytes) -> Callable[[Path, Path], Built]:
    def build(tmp: Path, run: Path) -> Built:
        path = tmp / "hostile.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return Built(data=_padded(tmp, "good"), recipe=path)

    return build


def _checkpoint(kind: str) -> Callable[[Path, Path], Built]:
    """A hostile checkpoint (cut from the session's tiny run where it needs real bytes), with good data."""

    def build(tmp: Path, run: Path) -> Built:
        good = _padded(tmp, "good")
        best = (run / "checkpoints" / "best.ckpt").read_bytes()
        path, marker = tmp / "hostile.ckpt", tmp / "code-ran.marker"
        if kind == "truncated":
            path.write_bytes(_half(best))
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "pickle":
            path.write_bytes(pickle.dumps({"polypseg": _RunsCode(marker), "state_dict": {}}, protocol=2))
        elif kind == "safetensors":
            from safetensors.torch import save_file

            path = tmp / "hostile.safetensors"
            save_file({"w": torch.zeros(64)}, str(path))
            path.write_bytes(_half(path.read_bytes()))
        else:  # metadata that does not describe its weights
            ckpt = torch.load(io.BytesIO(best), weights_only=True)
            ckpt["polypseg"]["model_args"] = {**ckpt["polypseg"]["model_args"], "base": 8}
            torch.save(ckpt, path)
        return Built(data=good, file=good / "images" / "good0.png", model=path, marker=marker)

    return build


def _video(tmp: Path, run: Path) -> Built:
    path = tmp / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # an MP4 box, then garbage
    return Built(file=path)


def _gray16() -> Image.Image:
    return Image.fromarray(np.arange(H * W, dtype=np.uint16).reshape(H, W) * 80)  # a 16-bit grey ramp


def _palette() -> Image.Image:
    return Image.fromarray(_rgb(3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)


def _colour_mask(path: Path) -> None:
    m = np.zeros((H, W, 3), np.uint8)
    m[..., 0] = _mask()  # a red polyp on black
    Image.fromarray(m).save(path)


def _label_map(path: Path) -> None:
    m = np.zeros((H, W), np.uint8)
    m[2:8], m[12:18] = 1, 2  # background, polyp and a second class
    cv2.imwrite(str(path), m)


def _jpeg_mask(path: Path) -> None:
    m = np.zeros((H, W), np.uint8)
    cv2.circle(m, (W // 2, H // 2), 7, 255, -1)
    Image.fromarray(m).save(path, "JPEG", quality=70)


# --- the corpus -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile input: how to make it, the commands that meet it and the outcome expected of each.

    ``names``: text every refusal must contain (the offending file); ``says``: what it must say is wrong
    or how to fix it; ``note``: for accepted inputs, the kind ``data check`` counts; ``status``: the
    served ``POST /predict``'s HTTP status for ``file`` (None: not an upload case).
    """

    id: str
    build: Callable[[Path, Path], Built]  # (tmp folder, the session's tiny run) -> what it made
    commands: tuple[str, ...]
    refused: bool
    names: tuple[str, ...] = ()
    says: str = ""
    note: str | None = None
    status: int | None = None


FOLDER = ("check", "train", "evaluate")
IMAGE = ("check", "train", "evaluate", "predict")
IMAGE_OK = ("check", "evaluate", "predict")  # accepted: no training run for each
MASK = ("check", "train", "evaluate")
MODEL = ("predict", "evaluate", "serve", "init")
JPEG = _encoded(_rgb(5), "JPEG")
PNG = _encoded(_rgb(5), "PNG")

CASES = [
    Case("empty_folder", _folder("empty"), FOLDER, True, ("suspect",), "no known data layout"),
    Case("images_folder_only", _folder("images_only"), FOLDER, True, ("suspect",), "no known data layout"),
    Case("images_no_masks", _folder("images_no_masks"), FOLDER, True, ("lonely0.png",), "image without mask"),
    Case("masks_no_images", _folder("masks_no_images"), FOLDER, True, ("lonely0.png",), "mask without image"),
    Case("unpaired_names", _extra_files({"images/left.png": None, "masks/right.png": None}), FOLDER, True,
         ("left.png", "right.png"), "image without mask"),
    Case("same_stem_two_extensions", _extra_files({"images/twin.png": None, "images/twin.jpg": None,
                                                   "masks/twin.png": None}),
         FOLDER, True, ("twin.png", "twin.jpg"), "two images share the stem 'twin'"),
    Case("zero_byte_image", _image_case("empty.png", _bytes(b"")), IMAGE, True, ("empty.png",), "empty (0 bytes)",
         status=422),
    Case("truncated_jpeg", _image_case("cut.jpg", _bytes(_half(JPEG))), IMAGE, True, ("cut.jpg",),
         "truncated or corrupt", status=422),
    Case("truncated_png", _image_case("cut.png", _bytes(_half(PNG))), IMAGE, True, ("cut.png",),
         "truncated or corrupt", status=422),
    Case("truncated_tiff", _image_case("cut.tif", _bytes(b"II*\x00" + b"\xff" * 40)), IMAGE, True, ("cut.tif",),
         "truncated or corrupt", status=422),
    Case("text_named_png", _image_case("notes.png", _bytes(b"polyp notes, not pixels\n" * 4)), IMAGE, True,
         ("notes.png",), "holds text", status=415),
    Case("html_page_named_jpg", _image_case("page.jpg", _bytes(b"<!DOCTYPE html><html><body>404 Not Found"
                                                                b"</body></html>\n")),
         IMAGE, True, ("page.jpg",), "HTML page", status=415),
    Case("header_claims_100000x100000", _image_case("huge.png", _bytes(_png(100000, 100000, 8, 2, b""))), IMAGE,
         True, ("huge.png",), "is 10000000000 pixels, above the limit", status=413),
    Case("png_decompression_bomb", _image_case("bomb.png", _bytes(_bomb())), IMAGE, True, ("bomb.png",),
         "9000x9000 = 81000000 pixels, above the limit", status=413),
    Case("one_pixel_image", _image_case("dot.png", _bytes(_encoded(_rgb(4, 1, 1), "PNG")), (1, 1)),
         ("check", "train", "evaluate", "predict"), False, status=200),
    Case("image_16bit", _image_case("deep.png", _pil(_gray16)), IMAGE_OK, False, note="image mode I;16 converted",
         status=200),
    Case("image_rgba", _image_case("alpha.png", _pil(lambda: Image.fromarray(_rgb(4)).convert("RGBA"))),
         ("check", "train", "evaluate", "predict"), False, note="image mode RGBA converted", status=200),
    Case("image_palette", _image_case("pal.png", _pil(_palette)), IMAGE_OK, False, note="image mode P converted",
         status=200),
    Case("image_cmyk_jpeg", _image_case("cmyk.jpg", _pil(lambda: Image.fromarray(_rgb(4)).convert("CMYK"), "JPEG")),
         IMAGE_OK, False, note="image mode CMYK converted", status=200),
    Case("image_grayscale", _image_case("gray.png", _pil(lambda: Image.fromarray(_rgb(4)[..., 0]))), IMAGE_OK,
         False, note="image mode L converted", status=200),
    Case("mask_other_size", _mask_case("small.png", lambda p: cv2.imwrite(str(p), _mask(20, 20))), MASK, True,
         ("small.png",), "size mismatch"),
    Case("mask_rgb", _mask_case("red.png", _colour_mask), ("check", "evaluate"), False,
         note="colour masks read by their brightest channel"),
    Case("mask_three_labels", _mask_case("labels.png", _label_map), MASK, True, ("labels.png",),
         "holds 3 labels [0, 1, 2]"),
    Case("mask_values_0_100", _mask_case("hundred.png", lambda p: cv2.imwrite(str(p), _mask(high=100))),
         ("check", "evaluate"), False, note="masks with values other than 0/1, 0/255: low = background"),
    Case("mask_jpeg_noise", _mask_case("noisy.jpg", _jpeg_mask), ("check", "evaluate"), False,
         note="masks normalised by threshold"),
    Case("name_dash_unicode_spaces", _odd_name, ("check", "train", "evaluate", "predict"), False, status=200),
    Case("symlink_loop", _symlink(None), IMAGE, True, ("link.png",), "loops back on itself"),
    Case("dangling_symlink", _symlink("nowhere.png"), IMAGE, True, ("link.png",), "nowhere.png, which does not exist"),
    Case("folder_named_png", _dir_named_png, IMAGE_OK, False),
    Case("macos_appledouble", _extra_files({"images/._good0.png": b"\x00\x05\x16\x07" + b"\x00" * 60,
                                            "masks/._good0.png": b"\x00\x05\x16\x07" + b"\x00" * 60}),
         IMAGE_OK, False),
    Case("npz_garbage", _npz("garbage"), FOLDER, True, ("hostile.npz",), "not an NPZ archive"),
    Case("npz_truncated", _npz("truncated"), FOLDER, True, ("hostile.npz",), "truncated or damaged"),
    Case("npz_object_array", _npz("objects"), FOLDER, True, ("hostile.npz",), "never unpickles"),
    Case("npz_npy_renamed", _npz("npy"), FOLDER, True, ("hostile.npz",), "not an NPZ archive"),
    Case("npz_count_mismatch", _npz("mismatch"), FOLDER, True, ("hostile.npz",), "differ in N, H or W"),
    Case("recipe_misspelt_key", _recipe(TINY_RECIPE + "epoch: 1\n"), ("train",), True, ("hostile.yaml",),
         "epoch: unknown key; did you mean 'epochs'?"),
    Case("recipe_misspelt_nested_key", _recipe(TINY_RECIPE.replace("augment:", "augmnet:")), ("train",), True,
         ("hostile.yaml",), "data.augmnet: unknown key; did you mean 'augment'?"),
    Case("recipe_not_a_mapping", _recipe("- epochs: 1\n- size: 32\n"), ("train",), True, ("hostile.yaml",),
         "expected a mapping at the top level"),
    Case("recipe_binary_file", _recipe(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(128, 256))), ("train",),
         True, ("hostile.yaml",), "not a text (UTF-8) YAML file"),
    Case("recipe_scalar_section", _recipe("data: 64\n"), ("train",), True, ("hostile.yaml",),
         "data is 64, not a section of keys"),
    Case("checkpoint_truncated", _checkpoint("truncated"), MODEL, True, ("hostile.ckpt",), "truncated or corrupt"),
    Case("checkpoint_zero_byte", _checkpoint("empty"), MODEL, True, ("hostile.ckpt",), "empty (0 bytes)"),
    Case("checkpoint_code_pickle", _checkpoint("pickle"), MODEL, True, ("hostile.ckpt",), "never unpickles"),
    Case("checkpoint_meta_mismatch", _checkpoint("mismatch"), ("predict", "evaluate", "serve"), True,
         ("hostile.ckpt",), "do not fit the model"),
    Case("safetensors_truncated", _checkpoint("safetensors"), ("init",), True, ("hostile.safetensors",),
         "truncated or corrupt"),
    Case("corrupt_video", _video, ("predict",), True, ("clip.mp4",), "cannot open video"),
]  # fmt: skip
BY_ID = {c.id: c for c in CASES}


def test_the_corpus_has_at_least_30_cases_with_unique_ids() -> None:
    assert len(CASES) >= 30 and len(BY_ID) == len(CASES)
    assert all(c.refused for c in CASES if "serve" in c.commands)  # an accepted model would start a server
    assert all(c.names and c.says for c in CASES if c.refused)


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run for every predict / evaluate here (and the source of the hostile checkpoints)."""
    from polypseg.training import fit

    run = tmp_path_factory.mktemp("hostile") / "run"
    overrides = {"epochs": 1, "data.size": 32, "data.batch_size": 4, "precision": "32"}
    fit(load_recipe(_tiny_recipe(run.parent), overrides), ["synthetic:n=24,size=32,seed=3"], run, progress=False)
    return run


def _tiny_recipe(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


# --- the commands -----------------------------------------------------------------------------------


def _args(command: str, built: Built, run: Path, tmp: Path) -> tuple[list[str], Path]:
    """The command line of ``command`` for ``built``, and the output folder it writes (or would)."""
    out = tmp / f"out-{command}"
    model = str(built.model or run)
    recipe = str(built.recipe or _tiny_recipe(tmp))
    if command == "check":
        return ["data", "check", str(built.data)], out
    if command == "train":
        return ["train", "--data", str(built.data), "--recipe", recipe, "--out", str(out), *TRAIN_OPTS], out
    if command == "init":
        return ["train", "--data", str(built.data), "--recipe", recipe, "--init", model, "--out", str(out),
                *TRAIN_OPTS], out  # fmt: skip
    if command == "evaluate":
        return ["evaluate", model, "--data", str(built.data), "--out", str(out)], out
    if command == "predict":
        return ["predict", model, str(built.file), "--out", str(out)], out
    if command == "serve":  # refused before uvicorn would start (only refused cases run it)
        return ["serve", model], out
    raise AssertionError(command)


def _shape(file: Path | io.BytesIO) -> tuple[int, int]:
    with Image.open(file) as img:
        return img.size[::-1]


def _logs() -> set[Path]:
    return set((cache_root() / "logs").glob("*.log"))


def _invoke(args: list[str]) -> Result:
    before = _logs()
    res = CliRunner().invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
    assert "Traceback" not in res.output and "unexpected error" not in res.output, res.output
    assert _logs() == before, "an unexpected error wrote a traceback log"
    return res


def _flat(res: Result) -> str:
    return " ".join(res.output.split())


def _check_refused(case: Case, command: str, res: Result, out: Path) -> None:
    expected = CHECK_REFUSED_EXIT if command == "check" else 2
    assert res.exit_code == expected, res.output
    text = _flat(res)
    for name in case.names:
        assert name in res.output, (name, res.output)
    assert " ".join(case.says.split()) in text, (case.says, res.output)
    assert not [a for a in UNSAFE_ADVICE if a in text], res.output
    if command in ("train", "init"):  # bad input is found before the run folder is written
        assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    if command == "evaluate":
        assert not (out / "summary.json").exists()


def _check_accepted(case: Case, command: str, built: Built, res: Result, out: Path) -> None:
    assert res.exit_code == 0, res.output
    if command == "check":
        assert "usable" in res.output
        if case.note:
            assert f"note: 1 file(s): {case.note}" in _flat(res), res.output  # the console may wrap it
    if command == "predict" and built.file is not None and built.file.is_file():
        assert _shape(out / f"{built.file.stem}_mask.png") == _shape(built.file)
    if command == "predict" and built.file is not None and built.file.is_dir():
        assert sorted(p.name for p in out.glob("*_mask.png")) == [f"good{i}_mask.png" for i in range(5)]
    if command == "evaluate":
        assert (out / "summary.json").exists()


PARAMS = [pytest.param(c.id, cmd, id=f"{c.id}-{cmd}") for c in CASES for cmd in c.commands]


@pytest.mark.parametrize(("case_id", "command"), PARAMS)
def test_hostile_input(case_id: str, command: str, tiny_run: Path, tmp_path: Path) -> None:
    """Run the command twice: the outcome is the case's, and the second run gives the same answer (nothing
    half-written blocks it); a refusal never unpickles, never crashes, and names the file."""
    case = BY_ID[case_id]
    built = case.build(tmp_path, tiny_run)
    args, out = _args(command, built, tiny_run, tmp_path)
    first = _invoke(args)
    if case.refused:
        _check_refused(case, command, first, out)
    else:
        _check_accepted(case, command, built, first, out)
    if built.marker is not None:
        assert not built.marker.exists(), "unpickling the checkpoint ran code"
    if command == "train" and not case.refused:
        return  # a finished run is rightly not overwritten by a second train into its folder
    again = _invoke(args)
    assert again.exit_code == first.exit_code, again.output
    if case.refused:
        assert _flat(again) == _flat(first)


# --- the served POST /predict -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_run: Path) -> Iterator[Any]:
    pytest.importorskip("fastapi", reason="the serve extra is part of the dev extra: pip install -e '.[dev]'")
    from fastapi.testclient import TestClient

    from polypseg.serve import ServeSettings, create_app

    with TestClient(create_app(tiny_run, ServeSettings(precision="32"))) as c:
        yield c


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on the damaged TIFF
@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.status is not None])
def test_hostile_upload(case_id: str, client: Any, tiny_run: Path, tmp_path: Path) -> None:
    """The same files uploaded to ``POST /predict``, as a raw body and as a form field named like the file:
    the status the serve code gives (413 too many pixels, 415 not an image, 422 empty or damaged; 200 and
    a mask of the image's size for accepted ones), never 500."""
    case = BY_ID[case_id]
    built = case.build(tmp_path, tiny_run)
    assert built.file is not None
    data = built.file.read_bytes()
    for res in (
        client.post("/predict", content=data),
        client.post("/predict", files={"file": (built.file.name, data)}),
    ):
        assert res.status_code == case.status, res.text
        if case.status == 200:
            assert _shape(io.BytesIO(res.content)) == _shape(built.file)
        else:
            assert res.json()["detail"] and "Traceback" not in res.text
