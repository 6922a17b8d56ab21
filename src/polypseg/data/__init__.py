"""Data: layouts and validation, groups and splits, the decode-once cache, augmentation, the datamodule.

Imports neither Lightning nor albumentations here: :mod:`polypseg.data.datamodule` and
:mod:`polypseg.data.augment` (training only) are imported by name where they are needed.
"""

from polypseg.data.errors import DataError
from polypseg.data.sample import Sample
from polypseg.data.sources import discover, discover_all

__all__ = ["DataError", "Sample", "discover", "discover_all"]
