"""The ``serve`` command: an HTTP service and browser viewer for a trained model (extra ``serve``)."""

from __future__ import annotations

import ipaddress
import os
import warnings
from typing import Annotated

import typer

from polypseg.cli.common import BackendOpt, CalibrateOpt, app, console
from polypseg.device import parse_precision
from polypseg.errors import MissingExtraError

#: Connections beyond the worker pool and its queue that uvicorn keeps open (the page, /health, uploads
#: still arriving); past ``workers + max_queue + SPARE_CONNECTIONS`` uvicorn answers 503 itself.
SPARE_CONNECTIONS = 16


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _say(text: str) -> None:
    console.print(text, markup=False, soft_wrap=True)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Run folder, .ckpt or .onnx file, or a shipped model's name.")],
    host: Annotated[str, typer.Option(help="Address to bind; the default is reachable from this machine only.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Inference worker threads (torch's threads are split between them).")
    ] = 2,
    max_queue: Annotated[int, typer.Option(help="Requests that may wait for a worker; more get 503.")] = 8,
    max_batch: Annotated[
        int, typer.Option(help="Most waiting requests one forward pass serves (micro-batching; 1: off).", min=1)
    ] = 8,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload in MiB; larger gets 413.")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image, width x height; larger gets 413.")] = 40_000_000,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait and run before 504.")] = 30.0,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="POLYPSEG_API_KEY", help="Require 'Authorization: Bearer KEY' (not on /health)."),
    ] = None,
    precision: Annotated[str, typer.Option(help="auto, 32, bf16 or 16.")] = "auto",
    tta: Annotated[bool, typer.Option("--tta", help="Flip test-time augmentation by default.")] = False,
    backend: BackendOpt = "auto",
    calibrate: CalibrateOpt = None,
) -> None:
    """Serve MODEL over HTTP: the viewer page at /, GET /health, GET /model, POST /predict (docs/serving.md)."""
    try:
        import uvicorn
        from PIL import Image

        from polypseg.serve import ServeSettings, create_app
    except ImportError:
        raise MissingExtraError("polypseg serve needs the 'serve' extra: pip install -e '.[serve]'") from None
    from polypseg.serve.memory import fix_allocator_settings

    fix_allocator_settings()  # before any worker thread exists: a flat resident size (polypseg.serve.memory)
    settings = ServeSettings(
        workers=workers, max_queue=max_queue, max_batch=max_batch, max_upload_mb=max_upload_mb, max_pixels=max_pixels,
        timeout_s=timeout, api_key=api_key or None, precision=parse_precision(precision), tta=tta,
        backend=backend, calibrate=str(calibrate) if calibrate else None,
    )  # fmt: skip
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))  # workers share the cores
    service = create_app(model, settings)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    _say(f"serving {model} at {url} ({workers} worker(s), queue {max_queue})")
    _say(f"backend: {service.state.card['serving']['backend_reason']}")
    if _is_loopback(host):
        _say(f"bound to {host}: loopback only, no other machine can reach it (--host to change)")
    else:
        _say(f"bound to {host}: reachable from the network; put it behind TLS (docs/serving.md)")
        if settings.api_key is None:
            _say("warning: no --api-key: anyone who can reach this port can use the model")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb guard at the same limit (the app checks first)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    uvicorn.run(
        service,
        host=host,
        port=port,
        log_level="info",
        limit_concurrency=workers + max_queue + SPARE_CONNECTIONS,
        timeout_keep_alive=5,
        server_header=False,
    )
