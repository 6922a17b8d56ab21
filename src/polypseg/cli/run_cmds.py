"""Commands that run a trained model: ``predict``, ``models`` (the shipped ones) and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polypseg.cli.common import BackendOpt, CalibrateOpt, app, check_threshold, console, print_notes
from polypseg.device import parse_precision
from polypseg.errors import InputError


@app.command()
def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="[MODEL] then image files, folders of images or videos (MODEL unless --model)."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Run folder, checkpoint, .onnx file or shipped model name (polypseg models)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for masks and overlays.")] = Path("predictions"),
    threshold: Annotated[
        float | None,
        typer.Option(help="Override the checkpoint's threshold; in (0, 1).", callback=check_threshold),
    ] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Flip test-time augmentation.")] = False,
    precision: Annotated[
        str,
        typer.Option(help="auto (bf16 where the device has bf16 units: about 2x faster), 32, bf16 or 16."),
    ] = "auto",
    backend: BackendOpt = "auto",
    calibrate: CalibrateOpt = None,
) -> None:
    """Write a 0/255 mask PNG (at each input's size) and an overlay PNG per image; inputs sharing a file
    stem get <stem>, <stem>_2, <stem>_3, ... in input order. The model is --model, or else the first input."""
    from polypseg.data.errors import ReadNotes
    from polypseg.inference.predict import predict as run_predict

    if model is None:
        if len(inputs) < 2:
            raise InputError("give the model (--model NAME, or a run folder first) and at least one input")
        model, inputs = str(inputs[0]), inputs[1:]
    notes = ReadNotes()
    written = run_predict(model, inputs, out, threshold, tta, parse_precision(precision), notes=notes,
                          backend=backend, calibrate=calibrate, log=console.print)  # fmt: skip
    print_notes(notes.counts())
    console.print(f"wrote {len(written)} masks and overlays to {out}")


@app.command()
def models() -> None:
    """List the models shipped inside polypseg (usable wherever a run folder is: predict, evaluate, export,
    serve, train --init)."""
    from polypseg.zoo import available

    shipped = available()
    table = Table(title="shipped models")
    for col in ("name", "architecture", "input px", "trained on", "validation mDice", "licence"):
        table.add_column(col)
    for m in shipped:
        meta, card = m.card["polypseg"], m.card
        arch = f"{meta['model_name']} {meta['model_args']}"
        table.add_row(
            m.name, arch, str(meta["preprocess"]["size"]), card.get("training_data", {}).get("name", "?"),
            f"{card.get('figures', {}).get('validation_mdice', float('nan')):.3f}",
            card.get("training_data", {}).get("licence", "?"),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{len(shipped)} shipped model(s); model cards: {', '.join(str(m.weights.with_suffix('.md')) for m in shipped)}"
    )


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run folder, checkpoint file or shipped model name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    int8: Annotated[bool, typer.Option("--int8", help="Static int8 quantisation (QDQ); needs --calibrate.")] = False,
    calibrate: Annotated[
        Path | None, typer.Option(help="Calibration frames for --int8: a data folder or a folder of images.")
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="Frames drawn (seeded) from --calibrate.", min=1)] = 64,
) -> None:
    """Export the model to ONNX, fp32 or int8 (self-describing; predict, evaluate and serve accept the file)."""
    from polypseg.inference.export import export_onnx

    if calibrate is not None and not int8:
        raise InputError("--calibrate is for --int8 exports; add --int8 or leave --calibrate out")
    path = export_onnx(run, out, opset, int8=int8, calibrate=calibrate, calibration_images=calibration_images)
    if int8:
        from polypseg.inference.export import read_onnx_meta

        cal = read_onnx_meta(path)["quantization"]["calibration"]
        console.print(f"exported {path} (int8, calibrated on {cal['images']} frames of {cal['data']})")
    else:
        console.print(f"exported {path}")
