"""Shared fixtures: an isolated cache folder and tiny generated data sets."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

# the CLI's console wraps at the terminal's width (80 without one), which splits long tmp paths in the messages
# the tests read; a wide console keeps them whole wherever the suite runs (a terminal, nohup, CI)
os.environ["COLUMNS"] = "250"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the polypseg cache at a per-session temporary folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYPSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def write_pair(
    folder: Path,
    stem: str,
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
    image_ext: str = ".png",
    mask_name: str | None = None,
) -> None:
    """Write a random RGB image and a 0/255 mask with a filled rectangle, both ``size`` = (H, W)."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 255
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "images" / f"{stem}{image_ext}"), image)
    cv2.imwrite(str(folder / "masks" / (mask_name or f"{stem}.png")), mask)


@pytest.fixture
def pair_folder(tmp_path: Path) -> Path:
    """A folder with images/ and masks/ holding 10 matched pairs."""
    root = tmp_path / "toy"
    for i in range(10):
        write_pair(root, f"img{i:02d}", seed=i)
    return root
