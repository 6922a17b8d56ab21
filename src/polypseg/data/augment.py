"""Augmentation presets (albumentations). Image and mask always go through the same transform.

Geometric transforms move the mask with the image and resample it with nearest-neighbour
interpolation (albumentations' ``mask_interpolation`` default), so it stays in {0, 1}. Colour
transforms touch the image only.

Presets:
- ``none``: nothing.
- ``flips``: horizontal and vertical flips.
- ``seed``: the original report's five (horizontal flip, vertical flip, rotation up to 30 degrees,
  affine scale / translate / shear, colour jitter), now applied to the mask as well.
- ``strong``: ``seed`` plus random resized crop, elastic or grid distortion, blur, noise,
  brightness-contrast / HSV, CLAHE and coarse dropout.
"""

from __future__ import annotations

import albumentations as A
import cv2

from polypseg.errors import InputError

PRESETS = ("none", "flips", "seed", "strong")


def _seed_transforms() -> list[A.BasicTransform]:
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Rotate(limit=30, border_mode=cv2.BORDER_CONSTANT, p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), shear=(-10, 10), p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.5),
    ]


def build_augment(preset: str, size: int) -> A.Compose:
    """The albumentations pipeline of a preset for square ``size x size`` uint8 inputs.

    Raises:
        KeyError: unknown preset; the message lists the valid ones.
    """
    if preset == "none":
        ts: list[A.BasicTransform] = []
    elif preset == "flips":
        ts = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    elif preset == "seed":
        ts = _seed_transforms()
    elif preset == "strong":
        ts = [
            A.RandomResizedCrop(size=(size, size), scale=(0.5, 1.0), ratio=(0.8, 1.25), p=0.5),
            *_seed_transforms(),
            A.OneOf(
                [
                    A.ElasticTransform(alpha=30, sigma=6, p=1.0),
                    A.GridDistortion(distort_limit=0.2, p=1.0),
                ],
                p=0.25,
            ),
            A.OneOf(
                [A.GaussianBlur(sigma_limit=(0.3, 1.5), p=1.0), A.GaussNoise(std_range=(0.02, 0.08), p=1.0)],
                p=0.3,
            ),
            A.OneOf(
                [
                    A.RandomBrightnessContrast(0.2, 0.2, p=1.0),
                    A.HueSaturationValue(10, 20, 15, p=1.0),
                    A.CLAHE(clip_limit=2.0, p=1.0),
                ],
                p=0.5,
            ),
            A.CoarseDropout(
                num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), p=0.3
            ),
        ]
    else:
        raise InputError(f"unknown augmentation preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return A.Compose(ts)
