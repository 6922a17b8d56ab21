"""A built-in, seeded, colonoscopy-like synthetic data set with exact masks.

Each frame shows textured pink-red mucosa with vessels, shaded folds, a dark lumen, a vignette and
specular highlights, and carries 0 to 3 polyps: irregular bumps of varied size, colour and contrast,
visible mostly through their shading and outline rather than their colour, so a colour threshold
cannot solve the task (a test checks this). Frame ``i`` of a seed is the same on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from polypseg.errors import InputError
from polypseg.paths import cache_root


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1] of shape (size, size): a random ``cells`` grid, bicubic-upsampled."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _blob(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Filled irregular closed shape (uint8 0/1): a circle whose radius wobbles with angle."""
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    radius = np.full_like(theta, r)
    for k in range(2, 6):
        radius += r * rng.uniform(0, 0.16 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    squash = rng.uniform(0.7, 1.0)
    angle = rng.uniform(0, np.pi)
    x = radius * np.cos(theta)
    y = radius * np.sin(theta) * squash
    xr = cx + x * np.cos(angle) - y * np.sin(angle)
    yr = cy + x * np.sin(angle) + y * np.cos(angle)
    pts = np.stack([xr, yr], axis=1).round().astype(np.int32)
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [pts], 1)
    return out


def _shade(height: np.ndarray, light: np.ndarray, strength: float) -> np.ndarray:
    """Lambert-like shading factor of a height map under a light direction (2-vector)."""
    gy, gx = np.gradient(height)
    return 1.0 + strength * (gx * light[0] + gy * light[1])


def render_frame(seed: int, index: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Render frame ``index`` of the synthetic set ``seed``.

    Returns:
        ``(image, mask)``: ``uint8`` RGB ``(size, size, 3)`` and ``uint8`` ``(size, size)`` in {0, 1}.
    """
    if size < 32:
        raise InputError(f"synthetic frames need size >= 32, got {size}")
    rng = np.random.default_rng([seed, index])
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s

    # Mucosa: a pink-red base colour modulated by low- and mid-frequency texture.
    base = np.array([rng.uniform(0.70, 0.92), rng.uniform(0.30, 0.48), rng.uniform(0.30, 0.45)], np.float32)
    tex = 0.10 * _smooth_noise(rng, s, 4) + 0.05 * _smooth_noise(rng, s, 16) + 0.03 * _smooth_noise(rng, s, 48)
    img = base[None, None, :] * (1 + tex[..., None])

    # Height field of folds (ridges) and polyps (domes), shaded by one light.
    height = np.zeros((s, s), np.float32)
    for _ in range(rng.integers(1, 4)):
        fold = np.zeros((s, s), np.uint8)
        center = (int(rng.uniform(-0.2, 1.2) * s), int(rng.uniform(-0.2, 1.2) * s))
        axes = (int(rng.uniform(0.3, 0.8) * s), int(rng.uniform(0.2, 0.6) * s))
        width = max(2, int(s * rng.uniform(0.02, 0.05)))
        cv2.ellipse(fold, center, axes, rng.uniform(0, 180), 0, 360, 1, width)
        height += cv2.GaussianBlur(fold.astype(np.float32), (0, 0), width * 0.8) * width * rng.uniform(0.3, 0.8)

    mask = np.zeros((s, s), np.uint8)
    n_polyps = int(rng.choice([0, 1, 1, 1, 2, 2, 3]))
    polyp_colour = np.ones((s, s, 3), np.float32)
    for _ in range(n_polyps):
        r = rng.uniform(0.07, 0.2) * s
        cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
        blob = _blob(rng, s, cx, cy, r)
        if blob.sum() < 16:
            continue
        mask |= blob
        dome = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), r * rng.uniform(0.25, 0.45))
        height += dome * r * rng.uniform(0.4, 0.9)
        tint = np.array([rng.uniform(0.9, 1.12), rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)], np.float32)
        speckle = 1 + 0.06 * _smooth_noise(rng, s, 32)
        colour = tint[None, None, :] * speckle[..., None]
        polyp_colour = np.where(blob[..., None] > 0, colour, polyp_colour)
    img = img * polyp_colour
    angle = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(angle), np.sin(angle)], np.float32)
    img = img * np.clip(_shade(height, light, strength=rng.uniform(0.35, 0.6)), 0.2, 1.8)[..., None]
    # Rim of the polyps: a faint dark outline where the bump meets the wall.
    edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)
    img = img * (1 - rng.uniform(0.05, 0.2) * cv2.GaussianBlur(edge, (0, 0), 1.0)[..., None])

    # Vessels: thin dark-red curves on the mucosa.
    vessels = np.zeros((s, s), np.float32)
    for _ in range(rng.integers(3, 9)):
        pts = np.cumsum(rng.normal(0, s * 0.05, (8, 2)), axis=0) + rng.uniform(0, s, 2)
        cv2.polylines(vessels, [pts.astype(np.int32)], False, 1.0, 1)
    vessels = cv2.GaussianBlur(vessels, (0, 0), 0.7)
    img = img * (1 - 0.25 * vessels[..., None] * np.array([0.3, 1.0, 0.9], np.float32))

    # Bright mucosa patches of polyp-like colour (distractors), a dark lumen, then the vignette.
    for _ in range(rng.integers(0, 3)):
        patch = cv2.GaussianBlur(
            _blob(rng, s, rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.06, 0.18) * s).astype(np.float32),
            (0, 0),
            s * 0.03,
        )
        img = img * (1 + rng.uniform(0.08, 0.2) * patch[..., None])
    if rng.random() < 0.7:
        lx, ly = rng.uniform(0.2, 0.8, 2)
        lumen = np.exp(-(((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * rng.uniform(0.05, 0.12) ** 2)))
        img = img * (1 - 0.85 * lumen[..., None])
    radius2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
    img = img * np.clip(1.15 - 1.6 * radius2, 0.05, 1)[..., None]
    img = img * rng.uniform(0.8, 1.15)  # exposure

    # Specular highlights: small saturated white spots, on polyps and wall alike.
    spec = np.zeros((s, s), np.float32)
    for _ in range(rng.integers(2, 12)):
        c = (int(rng.uniform(0, s)), int(rng.uniform(0, s)))
        ax = (max(1, int(rng.uniform(0.004, 0.02) * s)), max(1, int(rng.uniform(0.004, 0.012) * s)))
        cv2.ellipse(spec, c, ax, rng.uniform(0, 180), 0, 360, 1.0, -1)
    spec = cv2.GaussianBlur(spec, (0, 0), 0.8)
    img = img * (1 - spec[..., None]) + spec[..., None] * 1.0

    img = img + rng.normal(0, 0.012, img.shape).astype(np.float32)
    image = np.clip(img * 255, 0, 255).astype(np.uint8)
    return image, mask


SPLIT_SIZES = {"train": 0.75, "val": 0.10, "test": 0.15}


def write_synthetic(root: str | Path, n: int = 400, size: int = 256, seed: int = 0) -> Path:
    """Write ``n`` frames in the split-folder layout ``root/{train,val,test}/{images,masks}/``.

    Frames are split 75 / 10 / 15 %. Images are PNG (lossless), masks PNG with values 0 / 255.
    The folder is written under a temporary name and renamed, so a reader never sees half of it.
    Returns ``root``.
    """
    root = Path(root)
    if n < 10:
        raise InputError(f"the synthetic set needs n >= 10 frames, got {n}")
    counts = {k: round(v * n) for k, v in SPLIT_SIZES.items()}
    counts["train"] = n - counts["val"] - counts["test"]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
    try:
        index = 0
        for split, count in counts.items():
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir(parents=True)
            for _ in range(count):
                image, mask = render_frame(seed, index, size)
                stem = f"syn{seed}_{index:05d}"
                cv2.imwrite(str(tmp / split / "images" / f"{stem}.png"), image[..., ::-1])
                cv2.imwrite(str(tmp / split / "masks" / f"{stem}.png"), mask * 255)
                index += 1
        (tmp / "synthetic.json").write_text(json.dumps({"n": n, "size": size, "seed": seed, **counts}))
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def ensure_synthetic(n: int = 400, size: int = 256, seed: int = 0) -> Path:
    """The synthetic set's folder in the cache, written on first use (see :func:`write_synthetic`)."""
    key = hashlib.sha1(f"v1-{n}-{size}-{seed}".encode()).hexdigest()[:8]
    root = cache_root() / "synthetic" / f"n{n}-s{size}-seed{seed}-{key}"
    if not (root / "synthetic.json").exists():
        write_synthetic(root, n=n, size=size, seed=seed)
    return root
