"""Content fingerprints of images: how polypseg tells, by content and not by name, whether two data sets
share an image (an external test set must share none with the run's training and validation images)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polypseg.data.sample import Sample
from polypseg.data.sources import _npz_arrays


def image_fingerprint(sample: Sample) -> str:
    """A 32-hex-digit BLAKE2b digest of the sample's image: the file's bytes, or for an NPZ row the
    row's pixels (dtype, shape and bytes). Identical files give identical fingerprints wherever they lie."""
    h = hashlib.blake2b(digest_size=16)
    if sample.index is None:
        h.update(Path(sample.image).read_bytes())
    else:
        rows = _npz_arrays(str(sample.image), sample.image.stat().st_mtime_ns)[f"{sample.split}_images"]
        row = np.ascontiguousarray(rows[sample.index])
        h.update(f"{row.dtype}{row.shape}".encode())
        h.update(row.tobytes())
    return h.hexdigest()


def fingerprints(samples: Sequence[Sample]) -> dict[str, str]:
    """``{sample id: image fingerprint}`` of every sample (reads each image file once)."""
    return {s.id: image_fingerprint(s) for s in samples}
