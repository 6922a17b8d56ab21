"""TIFF images and masks are decoded by tifffile, including forms Pillow refuses or misreads."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from polypseg.data.check import check_data
from polypseg.data.errors import DataError
from polypseg.data.io import read_image, read_mask

RGB = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
BASE = np.zeros((6, 8), np.uint8)
BASE[1:4, 2:6] = 1  # 12 polyp pixels


def _pillow_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        return np.asarray(img)


def test_tiffs_pillow_refuses_are_read_exactly(tmp_path: Path) -> None:
    planar = tmp_path / "planar.tif"  # float RGB, one plane per channel
    planes = np.moveaxis(RGB / 255, 2, 0).astype(np.float32)
    tifffile.imwrite(planar, planes, photometric="rgb", planarconfig="separate")
    contig = tmp_path / "contig.tiff"  # float RGB, deflate-compressed
    tifffile.imwrite(contig, (RGB / 255).astype(np.float32), photometric="rgb", compression="zlib")
    mask = tmp_path / "mask.tif"  # a float RGB mask: white polyp
    tifffile.imwrite(mask, np.repeat(BASE[..., None], 3, axis=2).astype(np.float32), photometric="rgb")
    for path in (planar, contig, mask):
        with pytest.raises(OSError, match="cannot identify image file"):
            _pillow_pixels(path)
    assert np.array_equal(read_image(planar), RGB) and np.array_equal(read_image(contig), RGB)
    assert np.array_equal(read_mask(mask)[0], BASE)


def test_tiffs_pillow_misreads_are_read_exactly(tmp_path: Path) -> None:
    mask16 = tmp_path / "mask16.tif"  # 16-bit planar RGB mask, polyp 65535
    tifffile.imwrite(mask16, np.stack([BASE.astype(np.uint16) * 65535] * 3), photometric="rgb", planarconfig="separate")
    assert not np.array_equal(_pillow_pixels(mask16)[..., 0] > 127, BASE)  # Pillow gets the pixels wrong
    mask, normalised = read_mask(mask16)
    assert np.array_equal(mask, BASE) and not normalised
    gray16 = tmp_path / "gray16.tif"  # 16-bit gray image: c * 257 -> c
    tifffile.imwrite(gray16, RGB[..., 0].astype(np.uint16) * 257, compression="zlib", predictor=True)
    assert np.array_equal(read_image(gray16), np.repeat(RGB[..., :1], 3, axis=2))
    white = tmp_path / "white.tif"  # min-is-white: stored 0 is white, so the polyp is stored as 0
    tifffile.imwrite(white, (1 - BASE) * 255, photometric="miniswhite")
    assert np.array_equal(read_mask(white)[0], BASE)


def test_palette_and_lzw_tiffs(tmp_path: Path) -> None:
    lzw = tmp_path / "lzw.tif"  # LZW needs the optional imagecodecs package in tifffile, else Pillow reads it
    Image.fromarray(RGB).save(lzw, compression="tiff_lzw")
    palette = tmp_path / "palette.tif"  # a grey palette: index i is the colour (i, i, i)
    Image.fromarray(BASE).convert("P").save(palette)
    assert np.array_equal(_pillow_pixels(palette), BASE)
    assert np.array_equal(read_image(lzw), RGB)
    assert np.array_equal(read_image(palette), BASE[..., None].repeat(3, axis=2))  # indices 0/1 as gray 0/1
    assert np.array_equal(read_mask(palette)[0], BASE)  # palette masks by index


def test_tiff_limits_and_damage_are_named(tmp_path: Path) -> None:
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, RGB, photometric="rgb")
    data = bytearray(big.read_bytes())
    start = data.index(RGB.tobytes())
    data[start : start + RGB.size] = b""  # pixel data gone: only the tags are left to read
    big.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"big\.tif is 8x6 = 48 pixels, above the limit of 40"):
        read_image(big, max_pixels=40)  # checked from the tags, before any pixel is decoded
    with pytest.raises(DataError, match=r"cannot decode .*big\.tif: the file is truncated or corrupt"):
        read_image(big)
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(DataError, match=r"junk\.tif"):
        read_mask(tmp_path / "junk.tif")


def test_clinicdb_tiffs_pass_data_check(tmp_path: Path) -> None:
    root = tmp_path / "CVC-ClinicDB"
    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    for i in (1, 2):
        tifffile.imwrite(
            root / "Original" / f"{i}.tif", np.moveaxis(RGB, 2, 0), photometric="rgb", planarconfig="separate"
        )
        tifffile.imwrite(root / "Ground Truth" / f"{i}.tif", BASE * 255)
    report = check_data([str(root)])
    assert report.usable and report.n_pairs == 2 and report.fg_fraction_range == (12 / 48, 12 / 48)
    assert report.notes == []  # uint8 RGB needs no conversion
