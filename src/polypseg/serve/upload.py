"""From a request body to an RGB frame, in memory only: the multipart ``file`` field or a raw body, decoded
by Pillow with the pixel limit checked from the header before any pixel is decoded.

Nothing of an upload is ever written to disk (Starlette's own form parser spools large files to a
temporary file, so multipart bodies are parsed here with python-multipart's streaming parser instead).
Images are converted to RGB by the rule of :func:`polypseg.data.io.read_image`, so a served image is
the array ``polypseg predict`` would read from the same file (TIFFs: Pillow here, tifffile there).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from polypseg.data.io import _to_uint8  # the 16-bit / float conversion of read_image
from polypseg.serve.limits import ServeError

#: The formats Pillow may open here (others are refused as 415: a smaller attack surface).
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
#: Unambiguous first bytes of accepted formats: PNG, JPEG, TIFF (both byte orders, classic and BigTIFF).
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError)


def _parser_module():  # python-multipart >= 0.0.13 is python_multipart; older releases were "multipart"
    try:
        from python_multipart import multipart
    except ImportError:  # pragma: no cover - older python-multipart
        import multipart.multipart as multipart  # type: ignore[no-redef]
    return multipart


def multipart_file(body: bytes, content_type: str, field: str = "file") -> bytes:
    """The bytes of the form field ``field`` of a ``multipart/form-data`` body.

    Raises:
        ServeError: 400 for a malformed body, 422 when the form has no such field.
    """
    mp = _parser_module()
    _, params = mp.parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServeError(400, "multipart body without a boundary in its Content-Type")
    parts: list[dict] = []
    header = {"name": bytearray(), "value": bytearray()}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][bytes(header["name"]).lower()] = bytes(header["value"])
        header["name"], header["value"] = bytearray(), bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    try:
        parser = mp.MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception:  # the parser's own errors: the body is not well-formed multipart
        raise ServeError(400, "malformed multipart/form-data body") from None
    for part in parts:
        _, disposition = mp.parse_options_header(part["headers"].get(b"content-disposition", b""))
        if disposition.get(b"name") == field.encode():
            return bytes(part["data"])
    raise ServeError(422, f"the form has no field named '{field}': send the image as the '{field}' field")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes into a uint8 RGB array ``(H, W, 3)``.

    The size is read from the header and checked against ``max_pixels`` (width x height) before
    decoding, so a decompression bomb costs no memory.

    Raises:
        ServeError: 413 above ``max_pixels``; 415 not an image of :data:`FORMATS`; 422 empty, truncated
            or corrupt (also a file that starts like one of them but whose header cannot be read).
    """
    if not data:
        raise ServeError(422, "empty upload: send an image file (PNG, JPEG, BMP, TIFF or WebP)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ServeError(413, f"image has more pixels than the limit of {max_pixels} (--max-pixels)") from None
    except UnidentifiedImageError:
        if data.startswith(SIGNATURES):  # a format it accepts, whose header is damaged
            raise ServeError(422, "the image header is corrupt: the file cannot be decoded") from None
        raise ServeError(415, "not an image: send a PNG, JPEG, BMP, TIFF or WebP file") from None
    except _CORRUPT:
        raise ServeError(422, "the image header is corrupt: the file cannot be decoded") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ServeError(413, f"image is {w}x{h} = {w * h} pixels, above the limit of {max_pixels} (--max-pixels)")
    if w < 1 or h < 1:
        raise ServeError(422, "the image has no pixels")
    try:
        img.load()
        if img.mode != "RGB":
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                gray = _to_uint8(np.asarray(img))
                return np.repeat(gray[..., None], 3, axis=2)
            img = img.convert("RGB")
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    except Image.DecompressionBombError:
        raise ServeError(413, f"image has more pixels than the limit of {max_pixels} (--max-pixels)") from None
    except _CORRUPT:
        raise ServeError(422, "the image is truncated or corrupt: the file cannot be decoded") from None
