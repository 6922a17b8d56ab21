"""``predict``: masks and overlays for image files or folders of images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2

from polypseg.data.errors import DataError
from polypseg.data.io import IMAGE_EXTENSIONS, read_image
from polypseg.inference import Predictor, overlay


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in named folders, in the given order.

    Raises:
        DataError: an input that does not exist, or a folder with no images.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{p} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    return files


def predict(
    run_or_ckpt: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    threshold: float | None = None,
    tta: bool = False,
) -> list[Path]:
    """Write ``<stem>_mask.png`` (0 / 255, at the input's size) and ``<stem>_overlay.png`` per image.

    Returns the mask paths, in input order.
    """
    files = collect_images(inputs)
    predictor = Predictor.from_checkpoint(run_or_ckpt, threshold=threshold, tta=tta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written = []
    for path in files:
        image = read_image(path)
        mask = next(predictor.predict_mask([image]))
        stem = path.stem if path.stem not in used else f"{path.parent.name}_{path.stem}"
        used.add(stem)
        mask_path = out / f"{stem}_mask.png"
        cv2.imwrite(str(mask_path), mask * 255)
        cv2.imwrite(str(out / f"{stem}_overlay.png"), overlay(image, mask)[..., ::-1])
        written.append(mask_path)
    return written
