"""The FastAPI app of ``polypseg serve``: ``/health``, ``/model``, ``/predict`` and the viewer page at ``/``.

:func:`create_app` builds it around a :class:`polypseg.inference.Predictor` (or loads one from a run
folder, ``.ckpt`` or ``.onnx`` file), so tests drive it through FastAPI's TestClient without a port.
Every refusal is a short plain message (``{"detail": "..."}``), never a server path or a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import polypseg
from polypseg.serve.card import model_card
from polypseg.serve.docs import add_docs
from polypseg.serve.limits import MULTIPART_OVERHEAD, ServeError, ServeSettings, read_capped, too_large
from polypseg.serve.page import PAGE_HEADERS, page_files
from polypseg.serve.pool import InferencePool, QueueFullError
from polypseg.serve.results import render_png, summary
from polypseg.serve.upload import decode_image, multipart_file

Output = Literal["mask", "probability", "overlay", "json"]
_BODY_DOC = {
    "requestBody": {
        "description": "The image: a multipart form with the field `file`, or the raw file as the body.",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    },
    "responses": {"200": {"content": {"image/png": {}, "application/json": {}}}},
}


def _load(model: Any, settings: ServeSettings) -> tuple[Any, str | Path | None]:
    if isinstance(model, str | Path):
        from polypseg.inference.predictor import Predictor

        predictor = Predictor.from_checkpoint(
            model,
            tta=settings.tta,
            precision=settings.precision,
            backend=settings.backend,
            calibrate=settings.calibrate,
        )
        return predictor, model
    return model, None


@dataclass(frozen=True)
class InferJob:
    """One ``POST /predict``: the uploaded bytes and the request's settings."""

    data: bytes
    threshold: float | None
    tta: bool
    output: str
    max_pixels: int


def infer_batch(predictor: Any, jobs: list[InferJob]) -> list[Any]:
    """The work of several requests on one worker: decode each, one ``predict_proba`` over the frames
    that share a TTA setting (micro-batching: :mod:`polypseg.serve.pool`), then threshold and render each.

    The mask is ``Predictor.predict_mask``'s rule (probability > threshold) on the frame's own size.
    Returns per job ``(png bytes, polyp fraction, threshold)`` for PNG outputs, the JSON summary dict,
    or the exception that job raised (a bad upload fails only its own request).
    """
    results: list[Any] = [None] * len(jobs)
    images: dict[bool, list[tuple[int, np.ndarray]]] = {}
    for k, job in enumerate(jobs):
        try:
            images.setdefault(job.tta, []).append((k, decode_image(job.data, job.max_pixels)))
        except Exception as exc:  # answered as that request's 4xx by the app's error handlers
            results[k] = exc
    for tta, group in images.items():
        predictor.tta = tta  # this worker's own copy of the predictor
        probs = predictor.predict_proba([image for _, image in group])
        for (k, image), prob in zip(group, probs, strict=True):
            job = jobs[k]
            try:
                thr = predictor.threshold if job.threshold is None else float(job.threshold)
                mask = (prob > thr).astype(np.uint8)
                if job.output == "json":
                    results[k] = summary(prob, mask, thr)
                else:
                    results[k] = (render_png(job.output, image, prob, mask), float(mask.mean()), thr)
            except Exception as exc:
                results[k] = exc
    return results


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{err['loc'][-1]}: {err['msg']}" for err in exc.errors() if err.get("loc")]
        return _error(422, "invalid request: " + ("; ".join(parts) or "bad parameters"))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:  # the log has the details, never the client
        return _error(500, "internal error: the server could not process this request")


def create_app(model: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The service for ``model``: a Predictor (or an object with its interface), or a run folder, ``.ckpt``
    or ``.onnx`` path or shipped model name, loaded with ``settings.precision`` and ``settings.tta``.

    The inference workers start here and stop when the app's lifespan ends.
    """
    settings = settings or ServeSettings()
    predictor, source = _load(model, settings)
    card = model_card(predictor, source)
    card["limits"] = {
        "max_upload_mb": settings.max_upload_mb,
        "max_pixels": settings.max_pixels,
        "workers": settings.workers,
        "max_queue": settings.max_queue,
        "max_batch": settings.max_batch,
        "timeout_s": settings.timeout_s,
        "api_key_required": settings.api_key is not None,
    }
    pool = InferencePool(predictor, settings.workers, settings.max_queue, settings.max_batch, infer_batch)
    files = page_files()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(
        title="polypseg",
        version=polypseg.__version__,
        description="Polyp segmentation of RGB images with a trained polypseg model.",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs, without a CDN
        redoc_url=None,
    )
    app.state.pool, app.state.settings, app.state.card = pool, settings, card
    _install_error_handlers(app)
    add_docs(app)

    def authorise(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ServeError(
                401, "missing or wrong API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"}
            )

    def busy() -> ServeError:
        return ServeError(
            503, "the server is busy: every worker is busy and the queue is full; retry shortly",
            {"Retry-After": str(settings.retry_after_s)},
        )  # fmt: skip

    @app.get("/health")
    async def health() -> dict:
        """Liveness: the model is loaded; requests waiting for a worker and running now."""
        return {"status": "ok", "model_loaded": True, "queue_depth": pool.waiting, "running": pool.running,
                "workers": pool.workers, "max_queue": pool.max_queue}  # fmt: skip

    @app.get("/model", dependencies=[Depends(authorise)])
    async def model_info() -> dict:
        """The model card (architecture, parameters, input size, threshold and its source, recipe, data,
        stored validation Dice, versions) and this server's limits."""
        return card

    @app.post("/predict", dependencies=[Depends(authorise)], openapi_extra=_BODY_DOC)
    async def predict(
        request: Request,
        threshold: float | None = Query(None, gt=0, lt=1, description="Override the model's threshold."),
        tta: bool | None = Query(None, description="Flip test-time augmentation (default: the server's)."),
        output: Output = Query("mask", description="mask | probability | overlay PNG, or json."),
    ) -> Response:
        """Segment one image: a PNG at the image's size (mask 0/255, probability 0-255, overlay) or JSON."""
        if not pool.has_room():
            raise busy()
        ctype = request.headers.get("content-type", "")
        is_form = ctype.lower().startswith("multipart/form-data")
        limit = settings.max_upload_bytes
        room = limit + (MULTIPART_OVERHEAD if is_form else 0)
        body = await read_capped(request.stream(), request.headers.get("content-length"), room, limit)
        data = multipart_file(body, ctype) if is_form else body
        del body
        if len(data) > limit:
            raise too_large(limit)
        job = InferJob(data, threshold, settings.tta if tta is None else tta, output, settings.max_pixels)
        try:
            fut = pool.submit(job)
        except QueueFullError:
            raise busy() from None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(fut), settings.timeout_s)
        except asyncio.TimeoutError:
            fut.cancel()
            raise ServeError(504, f"no answer within {settings.timeout_s:g} s: the server is overloaded") from None
        if output == "json":
            return JSONResponse(result)
        png, fraction, thr = result
        return Response(png, media_type="image/png",
                        headers={"X-Polyp-Fraction": f"{fraction:.6f}", "X-Threshold": f"{thr:.6f}"})  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(files["index.html"], media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in files or name == "index.html":
            raise ServeError(404, "not found")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(files[name], media_type=f"{kind}; charset=utf-8", headers=PAGE_HEADERS)

    return app
