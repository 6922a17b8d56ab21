"""Commands that score models: ``evaluate``, ``report`` and ``compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polypseg.cli.common import BackendOpt, CalibrateOpt, app, check_threshold, console, labels, print_summary
from polypseg.errors import InputError


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder, checkpoint file or .onnx file.")],
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            help="Data (default: the run's). Repeat, or give a TestDataset/ folder, for "
            "several external test sets, each scored on its own, with a table over them.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="train, val, test or all (default: the run's test split, or external data whole)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default RUN/eval/SPLIT, RUN/eval/NAME or RUN/eval/A+B+...).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Override the checkpoint's threshold (0 < t < 1).", callback=check_threshold)
    ] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Flip test-time augmentation.")] = False,
    layout: Annotated[str | None, typer.Option(help="Force a data layout instead of detecting it.")] = None,
    report: Annotated[
        bool | None,
        typer.Option("--report/--no-report", help="Write report.html with figures (default: only for several sets)."),
    ] = None,
    backend: BackendOpt = "auto",
    calibrate: CalibrateOpt = None,
) -> None:
    """Score a model at each image's original resolution; writes per_image.csv and summary.json.

    The run's own data is scored on its split.json split; data that shares no image with the run's
    training and validation images is an external set, scored whole; a mix is refused. Several sets
    (--data A --data B, or a PraNet TestDataset/ folder: one set per sub-folder) must all be external;
    each is scored into OUT/<set>/ and table.md, table.csv and table.tex go to OUT/."""
    from polypseg.evaluation.evaluate import evaluate as run_eval
    from polypseg.evaluation.sets import is_multi_set

    if is_multi_set(data):
        if split is not None:
            raise InputError("--split applies to one data set; several external test sets are each scored whole")
        _evaluate_sets(run, list(data or []), out, threshold, tta, layout, report is not False, backend, calibrate)
        return
    res = run_eval(run, data or None, split, out, threshold, tta, layout, backend, calibrate)
    console.print(f"backend: {res.summary['backend']['reason']}", markup=False, soft_wrap=True)
    print_summary(res.summary, res.summary["selection"]["note"])
    console.print(f"written: {res.out_dir / 'summary.json'}, {res.out_dir / 'per_image.csv'}")
    if report:
        from polypseg.report import make_report

        path = make_report(run, res.summary["split"], res.out_dir, data or None, layout, log=console.print)
        console.print(f"report: {path}")


def _evaluate_sets(run: Path, data: list[str], out: Path | None, threshold: float | None, tta: bool,
                   layout: str | None, report: bool, backend: str, calibrate: Path | None) -> None:  # fmt: skip
    from polypseg.evaluation.sets import COLUMNS, evaluate_sets, format_cells

    res = evaluate_sets(run, data, out, threshold, tta, layout, backend, calibrate)
    if res.results:
        console.print(f"backend: {res.results[0][1].summary['backend']['reason']}", markup=False, soft_wrap=True)
    table = Table(title=f"{len(res.results)} external test sets, each scored whole")
    table.add_column("set")
    for head, _, _ in COLUMNS:
        table.add_column(head, justify="right")
    for k, row in enumerate(res.rows):
        table.add_row(*format_cells(row), end_section=k == len(res.results) - 1)
    console.print(table)
    if report:
        from polypseg.report import make_report

        for test_set, result in res.results:
            make_report(run, result.summary["split"], result.out_dir, [test_set.data], layout)
    files = "summary.json, per_image.csv" + (" and report.html" if report else "")
    console.print(f"written: {', '.join(str(p) for p in res.tables)}; each set's {files} in {res.out_dir}/<set>/",
                  markup=False, soft_wrap=True)  # fmt: skip


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    split: Annotated[str, typer.Option(help="The evaluated split to report on.")] = "test",
    data: Annotated[
        list[str] | None,
        typer.Option("--data", "-d", help="Data (default: the evaluated data, else the run's)."),
    ] = None,
    layout: Annotated[str | None, typer.Option(help="Force a data layout instead of detecting it.")] = None,
    foreground_labels: Annotated[
        str | None,
        typer.Option(help="Mask labels that count as polyp, e.g. '1,2' (default: the checkpoint's recipe's)."),
    ] = None,
) -> None:
    """Write a self-contained report.html (figures embedded) for an evaluated split. Evaluates first when
    the split has no evaluation yet or its evaluation is of other data than --data (and says so)."""
    from polypseg.report import make_report

    path = make_report(
        run,
        split,
        None,
        data or None,
        layout=layout,
        foreground_labels=labels(foreground_labels),
        log=lambda msg: console.print(msg, markup=False, soft_wrap=True),
    )
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

    from polypseg.atomic import atomic_write_text
    from polypseg.evaluation.compare import compare as compare_evals

    r = compare_evals(a, b, split, metric)
    direction = "higher" if r.higher_is_better else "lower"
    table = Table(title=f"{metric} ({direction} is better), {r.n_images} images, B - A")
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
    verdict = "neither model" if r.favours == "neither" else f"model {r.favours}"
    console.print(
        f"{direction} {metric} is better: the mean difference favours {verdict}; B is better on {r.b_better} "
        f"images, A on {r.a_better}",
        markup=False,
        soft_wrap=True,
    )
    console.print(f"A = {a}\nB = {b}", markup=False, soft_wrap=True)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps({"a": str(a), "b": str(b), "split": split, **r.to_dict()}, indent=1))
        console.print(f"written: {json_out}")
