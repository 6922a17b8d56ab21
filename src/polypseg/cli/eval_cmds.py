"""Commands that score models: ``evaluate``, ``report`` and ``compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polypseg.cli.common import app, console, fail, print_summary


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="Data (default: the run's).")] = None,
    split: Annotated[str, typer.Option(help="train, val, test or all.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/eval/SPLIT).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Override the checkpoint's threshold.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Flip test-time augmentation.")] = False,
    report: Annotated[bool, typer.Option("--report", help="Also write report.html with figures.")] = False,
) -> None:
    """Score a model at each image's original resolution; writes per_image.csv and summary.json."""
    from polypseg.data.errors import DataError
    from polypseg.evaluation.evaluate import evaluate as run_eval

    try:
        res = run_eval(run, data or None, split, out, threshold, tta)
    except (DataError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    print_summary(res.summary, f"{split} split")
    console.print(f"written: {res.out_dir / 'summary.json'}, {res.out_dir / 'per_image.csv'}")
    if report:
        from polypseg.report import make_report

        console.print(f"report: {make_report(run, split, res.out_dir, data or None)}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    split: Annotated[str, typer.Option(help="The evaluated split to report on.")] = "test",
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="Data (default: the run's).")] = None,
) -> None:
    """Write a self-contained report.html (figures embedded) for an evaluated split; evaluates first
    if needed."""
    from polypseg.data.errors import DataError
    from polypseg.report import make_report

    try:
        path = make_report(run, split, None, data or None)
    except (DataError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    console.print(f"report: {path}")


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Model A: run folder, evaluation folder or per_image.csv.")],
    b: Annotated[Path, typer.Argument(help="Model B, evaluated on the same images.")],
    split: Annotated[str, typer.Option(help="The evaluated split to read from run folders.")] = "test",
    metric: Annotated[
        str, typer.Option(help="Per-image metric: dice, iou, precision, recall, s_measure, mae, ...")
    ] = "dice",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result to this JSON file.")] = None,
) -> None:
    """Is B better than A? Paired over the same images: mean difference, its 95% bootstrap interval and a
    sign-flip permutation p-value. Run `polypseg evaluate` on both first."""
    import json

    from polypseg.evaluation.compare import compare as compare_evals

    try:
        r = compare_evals(a, b, split, metric)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
    table = Table(title=f"{metric}, {r.n_images} images, B - A")
    for col in ("A mean", "B mean", "B - A", f"{r.level:.0%} interval", "p (permutation)", "B / A better / tie"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{r.mean_a:.4f}",
        f"{r.mean_b:.4f}",
        f"{r.diff:+.4f}",
        f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
        f"{r.p_value:.4f}",
        f"{r.b_better} / {r.a_better} / {r.ties}",
    )
    console.print(table)
    console.print(f"A = {a}\nB = {b}", markup=False, soft_wrap=True)
    if json_out is not None:
        json_out.write_text(json.dumps({"a": str(a), "b": str(b), "split": split, **r.to_dict()}, indent=1))
        console.print(f"written: {json_out}")
