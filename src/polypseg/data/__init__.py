"""Data: sources and validation, splits, the decode-once cache, augmentation, datasets."""

from polypseg.data.errors import DataError
from polypseg.data.sources import Sample, discover, discover_all

__all__ = ["DataError", "Sample", "discover", "discover_all"]
