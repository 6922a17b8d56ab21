"""Content fingerprints of images: how polypseg tells, by content and not by name, whether two data sets
share an image (an external test set must share none with the run's training and validation images).

An NPZ row is hashed where it lies in its decoded array (:func:`~polypseg.data.sources.npz_array`, each
array decompressed once per pass), without a copy; :func:`fingerprints` lets the decoded arrays go when
it is done, so a training run does not hold them while it trains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from polypseg.data.sample import Sample
from polypseg.data.sources import npz_array, release_npz_arrays


def image_fingerprint(sample: Sample) -> str:
    """A 32-hex-digit BLAKE2b digest of the sample's image: the file's bytes, or for an NPZ row the
    row's pixels (dtype, shape and bytes). Identical files give identical fingerprints wherever they lie."""
    h = hashlib.blake2b(digest_size=16)
    if sample.index is None:
        h.update(Path(sample.image).read_bytes())
    else:
        row = npz_array(sample.image, f"{sample.split}_images")[sample.index]
        h.update(f"{row.dtype}{row.shape}".encode())
        h.update(row.data if row.flags.c_contiguous else row.tobytes())  # the same bytes; no copy when it can
    return h.hexdigest()


def fingerprints(samples: Sequence[Sample]) -> dict[str, str]:
    """``{sample id: image fingerprint}`` of every sample (reads each image file, and each NPZ array, once)."""
    try:
        return {s.id: image_fingerprint(s) for s in samples}
    finally:
        release_npz_arrays()
