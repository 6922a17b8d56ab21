"""The Typer apps, the console and the output helpers shared by every command."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from polypseg.cli.failure import DEBUG_KEY, PolypsegGroup
from polypseg.errors import InputError

app = typer.Typer(
    cls=PolypsegGroup,
    help="Train, evaluate and run U-Net-family models for polyp segmentation. Exit codes: 0 done, "
    "1 failure (diverged run, full disk, unexpected error), 2 bad input or usage, 130/143 interrupted "
    "by SIGINT/SIGTERM (state saved).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and generate data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the full traceback of an error (also: POLYPSEG_DEBUG=1).")
    ] = False,
) -> None:
    if debug:
        ctx.meta[DEBUG_KEY] = True


DataOpt = Annotated[
    list[str] | None,
    typer.Option("--data", "-d", help="Data folder, or 'synthetic[:n=400,size=256,seed=0]'. Repeat to combine."),
]


def _check_backend(value: str) -> str:
    from polypseg.inference.backends import check_backend

    return check_backend(value)


BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        envvar="POLYPSEG_BACKEND",
        callback=_check_backend,
        help="auto (times torch and ONNX Runtime once per model and CPU, keeps the faster, says which), torch, "
        "onnx or onnx-int8 (an int8 .onnx, or a checkpoint with --calibrate).",
    ),
]
CalibrateOpt = Annotated[
    Path | None,
    typer.Option(help="Calibration frames (a data folder) for --backend onnx-int8 on a checkpoint."),
]


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def labels(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--foreground-labels takes integers separated by commas, got {text!r}") from None


def print_notes(counts: dict[str, int]) -> None:
    """One ``note: N file(s): <what was done to read them>`` line per kind (e.g. RGBA converted to RGB)."""
    for kind, n in counts.items():
        console.print(f"note: {n} file(s): {kind}", markup=False, soft_wrap=True)


def check_threshold(value: float | None) -> float | None:
    """A ``--threshold`` value (or None: the checkpoint's own), checked to lie strictly between 0 and 1.

    Usable as a Typer option ``callback``. A probability threshold of 0 or below marks every pixel as polyp
    and one of 1 or above none, so such a value is a mistake, not a setting.

    Raises:
        typer.BadParameter: the value is outside (0, 1); Typer prints it and exits with code 2.
    """
    if value is not None and not 0 < value < 1:
        raise typer.BadParameter(
            f"a threshold must lie strictly between 0 and 1, in (0, 1), got {value}; "
            "leave it out to use the checkpoint's own threshold",
            param_hint="'--threshold'",
        )
    return value


def print_summary(summary: dict, title: str) -> None:
    from polypseg.evaluation.evaluate import metric_table_rows

    half = summary.get("metrics_at_0.5")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column(f"mean over images (t={summary['threshold']:.3f})", justify="right")
    table.add_column("pooled (all pixels)", justify="right")
    if half:
        table.add_column("mean over images (t=0.5)", justify="right")
    for name, mean, pooled in metric_table_rows(summary):
        extra = [f"{half['mean'][name]:.4f}"] if half else []
        table.add_row(name, f"{mean:.4f}", f"{pooled:.4f}", *extra)
    console.print(table)
    if "structure" in summary:
        st = Table(title="structure metrics (pysodmetrics; PraNet toolbox protocol)")
        st.add_column("metric")
        st.add_column("value", justify="right")
        for name, value in summary["structure"].items():
            st.add_row(name, f"{value:.4f}")
        console.print(st)
    console.print(
        f"{summary['metrics']['n_images']} images scored at their original resolution; "
        f"threshold {summary['threshold']:.3f} ({summary['threshold_source']}); "
        f"{summary['n_empty_gt']} with empty ground truth"
    )
    if "ci95" in summary:
        ci, m = summary["ci95"], summary["metrics"]["mean"]
        console.print(
            f"95% intervals over images (bootstrap): mDice {m['dice']:.4f} [{ci['dice'][0]:.4f}, {ci['dice'][1]:.4f}], "
            f"mIoU {m['iou']:.4f} [{ci['iou'][0]:.4f}, {ci['iou'][1]:.4f}]"
        )
