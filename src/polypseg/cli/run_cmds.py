"""Commands that run a trained model: ``predict`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polypseg.cli.common import app, check_threshold, console, fail
from polypseg.device import parse_precision


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for masks and overlays.")],
    threshold: Annotated[
        float | None,
        typer.Option(help="Override the checkpoint's threshold; in (0, 1).", callback=check_threshold),
    ] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Flip test-time augmentation.")] = False,
    precision: Annotated[
        str,
        typer.Option(help="auto (bf16 where the device has bf16 units: about 2x faster), 32, bf16 or 16."),
    ] = "auto",
) -> None:
    """Write a 0/255 mask PNG (at each input's size) and an overlay PNG per image; inputs sharing a file
    stem get <stem>, <stem>_2, <stem>_3, ... in input order."""
    from polypseg.data.errors import DataError
    from polypseg.inference.predict import predict as run_predict

    try:
        written = run_predict(run, inputs, out, threshold, tta, parse_precision(precision))
    except (DataError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    console.print(f"wrote {len(written)} masks and overlays to {out}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
) -> None:
    """Export the model to ONNX (self-describing; predict and evaluate accept the .onnx file)."""
    from polypseg.inference.export import export_onnx

    try:
        path = export_onnx(run, out, opset)
    except (ImportError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    console.print(f"exported {path}")
