"""``predict``: masks and overlays for image files, folders of images, and videos."""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from polypseg.atomic import atomic_open, atomic_save, atomic_write_image
from polypseg.data.errors import DataError, unreadable_file
from polypseg.data.io import IMAGE_EXTENSIONS, ReadNotes, read_image
from polypseg.inference.overlay import overlay
from polypseg.inference.predictor import Predictor

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg")


def _video_frames(path: Path, info: dict, max_pixels: int | None = None) -> Iterator[np.ndarray]:
    """The video's frames, uint8 RGB ``(H, W, 3)``, decoded one at a time; ``info["fps"]`` gets its frame rate.

    Frames get the pixel limit of images (``max_pixels``, default :data:`polypseg.data.io.MAX_PIXELS`, read
    when called): the frame size the container states is checked before any frame is decoded, and every
    decoded frame's size too (a container need not state it).

    Raises:
        DataError: a file OpenCV cannot open or decode, or frames above the limit; the message names the file.
    """
    from polypseg.data import io as data_io  # the module, so the limit is read now (tests lower it)

    limit = data_io.MAX_PIXELS if max_pixels is None else max_pixels

    def too_big(w: int, h: int) -> DataError:
        return DataError(
            f"video {path} has frames of {w}x{h} = {w * h} pixels, above the limit of {limit} that images have "
            f"too; downscale it first, e.g. ffmpeg -i '{path.name}' -vf scale=1920:-2 '{path.stem}_small.mp4'"
        )

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(
                f"cannot open video {path}: not a video file, a damaged one, or a codec OpenCV cannot decode; "
                f"check that it plays, or convert it, e.g. ffmpeg -i '{path.name}' -c:v libx264 '{path.stem}_h264.mp4'"
            )
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > limit:
            raise too_big(w, h)
        info["fps"] = cap.get(cv2.CAP_PROP_FPS) or 25.0
        while True:
            try:
                ok, bgr = cap.read()
            except cv2.error as exc:
                raise DataError(f"cannot decode video {path} ({exc}); the file is damaged: convert it again") from None
            if not ok:
                break
            if bgr.shape[0] * bgr.shape[1] > limit:
                raise too_big(bgr.shape[1], bgr.shape[0])
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or the first of ``stem_2``, ``stem_3``, ... not in ``used``; the name returned is added to it.

    Deterministic: the same inputs in the same order always get the same names.
    """
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name


def predict_video(
    predictor: Predictor, path: Path, out_dir: Path, stem: str | None = None, max_pixels: int | None = None
) -> tuple[Path, Path, float]:
    """Segment every frame of a video, in batches.

    Writes ``<stem>_overlay.mp4`` (prediction outlined and tinted, at the video's frame rate) and
    ``<stem>_frames.csv`` (per frame: predicted polyp area fraction and whether any polyp was found);
    ``stem`` defaults to the video's file stem. Returns ``(video path, csv path, frames per second achieved)``.

    Raises:
        DataError: naming the file, for a video that cannot be opened or has no decodable frame, or whose
            frames are above ``max_pixels`` (width x height; default the image limit,
            :data:`polypseg.data.io.MAX_PIXELS`). Those are found before any output is written; the frame
            size the container states is checked before a frame is decoded.
    """
    stem = stem or path.stem
    info: dict = {}
    frames = _video_frames(path, info, max_pixels)
    first = next(frames, None)
    if first is None:
        raise DataError(
            f"video {path} has no frame that can be decoded: it is empty or damaged; check that it plays, "
            "or convert it again"
        )
    h, w = first.shape[:2]
    video_out = out_dir / f"{stem}_overlay.mp4"
    csv_out = out_dir / f"{stem}_frames.csv"
    t0 = time.perf_counter()
    count = [0]

    def write_video(tmp: Path) -> None:  # both files are renamed into place only when every frame is done
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), info["fps"], (w, h))
        try:
            with atomic_open(csv_out, "w", newline="") as fh:
                rows = csv.writer(fh)
                rows.writerow(["frame", "polyp_fraction", "polyp_found"])
                for n, (frame, mask) in enumerate(predictor.frames_and_masks(itertools.chain([first], frames))):
                    writer.write(cv2.cvtColor(overlay(frame, mask), cv2.COLOR_RGB2BGR))
                    frac = float(mask.mean())
                    rows.writerow([n, f"{frac:.6f}", int(frac > 0)])
                    count[0] = n + 1
        finally:
            writer.release()

    atomic_save(video_out, write_video)
    return video_out, csv_out, count[0] / (time.perf_counter() - t0)


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in named folders, in the given order.

    In a folder, sub-folders (even one named ``x.png``) and hidden files (``.x.png``, macOS's ``._x.png``)
    are skipped, as the data layouts skip them.

    Raises:
        DataError: an input that does not exist (or is a symbolic link that loops or points nowhere), or a
            folder with no images.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
            )
            found = [f for f in found if not f.is_dir()]
            if not found:
                raise DataError(f"{p} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            continue  # videos are handled by predict()
        elif p.is_file():
            files.append(p)
        elif p.is_symlink():
            raise unreadable_file(p, "an image or video")
        else:
            raise DataError(f"input {p} does not exist")
    return files


def predict(
    run_or_ckpt: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    threshold: float | None = None,
    tta: bool = False,
    precision: str = "auto",
    notes: ReadNotes | None = None,
    backend: str | None = None,
    calibrate: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write ``<stem>_mask.png`` (0 / 255, at the input's size) and ``<stem>_overlay.png`` per image.

    Inputs sharing a file stem never overwrite each other: the first keeps ``<stem>``, the later ones get
    ``<stem>_2``, ``<stem>_3``, ... (the first such name not yet used), in input order.

    ``precision``: ``auto`` (default: bf16 autocast where the device has native bf16 units), ``32``, ``bf16``, ``16``.

    Videos (``.mp4``, ``.avi``, ...) give an overlay video and a per-frame CSV (:func:`predict_video`).

    ``notes`` collects what had to be done to read an image (e.g. RGBA converted to RGB), one per file.

    ``backend`` / ``calibrate``: see :mod:`polypseg.inference.backends`; ``log`` gets a line saying which
    backend runs and why.

    Returns the written mask paths (for videos, the CSV paths), in input order.
    """
    files = collect_images(inputs)
    videos = [Path(p) for p in inputs if Path(p).is_file() and Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    predictor = Predictor.from_checkpoint(
        run_or_ckpt, threshold=threshold, tta=tta, precision=precision, backend=backend, calibrate=calibrate, log=log
    )
    if log:
        log(f"backend: {predictor.backend.reason}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written = []
    images = (read_image(path, notes=notes) for path in files)  # read as the predictor's batches need them
    for path, (image, mask) in zip(files, predictor.frames_and_masks(images), strict=True):
        stem = unique_stem(path.stem, used)
        mask_path = out / f"{stem}_mask.png"
        atomic_write_image(mask_path, (mask * 255).astype(np.uint8))
        atomic_write_image(out / f"{stem}_overlay.png", overlay(image, mask))
        written.append(mask_path)
    used_videos: set[str] = set()  # their files (_overlay.mp4, _frames.csv) cannot clash with the images'
    for video in videos:
        written.append(predict_video(predictor, video, out, unique_stem(video.stem, used_videos))[1])
    return written
