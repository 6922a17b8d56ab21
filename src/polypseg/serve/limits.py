"""The service's settings and limits, the error every refusal is raised as, and the capped body reader.

Every limit of ``polypseg serve`` lives in :class:`ServeSettings`; a request that breaks one is refused
with a :class:`ServeError` (an HTTP status and a short plain message, never a server path or traceback).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from polypseg.errors import InputError

#: Default pixel limit of one upload: 40 megapixels (an 8K frame is 33 MP).
DEFAULT_MAX_PIXELS = 40_000_000
#: Room for multipart boundaries and part headers above the file's own size limit (bytes).
MULTIPART_OVERHEAD = 64 * 1024


class ServeError(Exception):
    """A refused request: ``status`` (HTTP code), a plain ``message`` and optional response ``headers``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class ServeSettings:
    """Limits and defaults of one server.

    Attributes:
        workers: inference worker threads, each running one micro-batch at a time; with 2 (the default) one
            decodes and renders while the other runs the network (``polypseg serve`` splits torch's threads
            between them), which measured 1.4x the frames/s of one worker on 2 cores (docs/serving.md).
        max_queue: requests that may wait for a worker; one more is answered 503 with ``Retry-After``.
        max_batch: most waiting requests a worker runs through the network together (micro-batching).
        max_upload_mb: largest accepted upload, in MiB (2**20 bytes); larger is 413.
        max_pixels: largest accepted image, width x height in pixels, read from the file's header before
            decoding; larger (decompression bombs included) is 413.
        timeout_s: seconds a request may wait and run before it is answered 504.
        api_key: when set, ``Authorization: Bearer <api_key>`` is required (not by /health or the page).
        retry_after_s: the ``Retry-After`` value of a 503, in seconds.
        precision: the predictor's precision when the app loads the model (``auto``, ``32``, ``bf16``, ``16``).
        tta: flip test-time augmentation for requests that do not say (query ``tta``).
        backend: who runs the network (:mod:`polypseg.inference.backends`; None: the file's own runtime).
        calibrate: calibration frames for ``onnx-int8`` on a checkpoint.
    """

    workers: int = 2
    max_queue: int = 8
    max_batch: int = 8
    max_upload_mb: float = 20.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout_s: float = 30.0
    api_key: str | None = None
    retry_after_s: int = 1
    precision: str = "auto"
    tta: bool = False
    backend: str | None = None
    calibrate: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if self.max_queue < 0:
            raise InputError(f"max_queue must be 0 or more, got {self.max_queue}")
        if self.max_upload_mb <= 0 or self.max_pixels <= 0 or self.timeout_s <= 0:
            raise InputError("max_upload_mb, max_pixels and timeout_s must be positive")

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 2**20)

    @classmethod
    def with_env_key(cls, api_key: str | None = None, **kwargs: object) -> ServeSettings:
        """Settings whose API key is ``api_key`` or, when that is None, ``$POLYPSEG_API_KEY`` (empty: none)."""
        key = api_key if api_key is not None else os.environ.get("POLYPSEG_API_KEY")
        return cls(api_key=key or None, **kwargs)  # type: ignore[arg-type]


def too_large(limit_bytes: int) -> ServeError:
    """The 413 of an upload above ``limit_bytes``."""
    return ServeError(413, f"upload too large: the limit is {limit_bytes / 2**20:.3g} MiB (--max-upload-mb)")


async def read_capped(chunks: AsyncIterator[bytes], declared: str | None, limit: int, file_limit: int) -> bytes:
    """The whole request body, in memory (never on disk), refusing it as soon as it passes ``limit`` bytes.

    ``declared`` is the ``Content-Length`` header, checked first so that an honest oversize upload is
    refused before a byte is read; ``file_limit`` is the limit the 413 message names (``limit`` may add
    room for multipart framing). Raises :class:`ServeError` 413 (too large) or 400 (bad Content-Length).
    """
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ServeError(400, "the Content-Length header is not a number") from None
        if length > limit:
            raise too_large(file_limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large(file_limit)
    return bytes(body)
