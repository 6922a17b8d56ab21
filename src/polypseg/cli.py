"""The ``polypseg`` command line: parse arguments, call library functions, print results."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Train, evaluate and run U-Net-family models for polyp segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and generate data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

DataOpt = Annotated[
    list[str] | None,
    typer.Option("--data", "-d", help="Data folder, or 'synthetic[:n=400,size=256,seed=0]'. Repeat to combine."),
]


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _labels(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        _fail(ValueError(f"--foreground-labels takes integers separated by commas, got {text!r}"))
        raise  # unreachable: _fail exits


def _fail(exc: Exception) -> None:
    console.print("[bold red]error:[/] ", end="")
    console.print(str(exc), markup=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _print_summary(summary: dict, title: str) -> None:
    from polypseg.evaluate import metric_table_rows

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


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (or resume).")],
    data: DataOpt = None,  # type: ignore[assignment]
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="Built-in recipe name or YAML file.")] = "quick",
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epochs.")] = None,
    size: Annotated[int | None, typer.Option(help="Override the training image size (pixels).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    precision: Annotated[str | None, typer.Option(help="Override precision: auto, 32, bf16-mixed, 16-mixed.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes of training.")] = None,
    devices: Annotated[int, typer.Option(help="Processes (CPU) or GPUs; >1 uses DDP.")] = 1,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.ckpt.")] = False,
    layout: Annotated[str | None, typer.Option(help="Force a data layout instead of detecting it.")] = None,
    fold: Annotated[str | None, typer.Option(help="Cross-validation fold k/K over train+val.")] = None,
    group_regex: Annotated[
        str | None, typer.Option(help="Regex on file stems giving patient/video/centre groups.")
    ] = None,
    group_csv: Annotated[str | None, typer.Option(help="FILE:COLUMN of a CSV with a 'stem' column.")] = None,
    foreground_labels: Annotated[
        str | None, typer.Option(help="Mask labels that count as polyp in multi-label masks, e.g. '1,2'.")
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option("--init", help="Fine-tune: start from this local checkpoint or state-dict file."),
    ] = None,
    init_partial: Annotated[
        bool, typer.Option("--init-partial", help="With --init: copy only the tensors whose name and shape fit.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    tune: Annotated[bool, typer.Option(help="Tune the threshold on validation after training.")] = True,
) -> None:
    """Train a model; writes config, split, checkpoints and metrics.csv into --out."""
    from polypseg.checkpoint import InitWeightsError
    from polypseg.config import RecipeError, load_recipe
    from polypseg.data.errors import DataError
    from polypseg.train import RunFolderError, fit

    _quiet_lightning()
    try:
        rec = None
        if not resume and not data:
            _fail(ValueError("give --data (or --resume to continue a run)"))
        if not resume:
            overrides = {
                "epochs": epochs,
                "data.size": size,
                "data.batch_size": batch_size,
                "seed": seed,
                "precision": precision,
                "data.fold": fold,
                "data.group_regex": group_regex,
                "data.group_csv": group_csv,
                "data.foreground_labels": _labels(foreground_labels),
                "init_weights": str(init) if init else None,
                "init_strict": False if init_partial else None,
            }
            rec = load_recipe(recipe, overrides)
        result = fit(
            rec,
            data or [],
            out,
            resume=resume,
            devices=devices,
            accelerator=accelerator,
            max_minutes=max_minutes,
            layout=layout,
            progress=progress,
            epochs=epochs if resume else None,
        )
    except (RecipeError, DataError, RunFolderError, FileNotFoundError, InitWeightsError) as exc:
        _fail(exc)
    from polypseg.train import _is_ddp_child

    if tune and not _is_ddp_child():
        sw = _tune(out)
        console.print(f"threshold tuned on validation: {sw.best:.3f} (stored in best.ckpt)")
    console.print(
        f"[bold green]done[/]: {result.epochs_done} epochs, best validation Dice {result.best_val_dice:.4f} "
        f"(epoch {result.best_epoch}); run folder {result.run_dir}"
    )


def _tune(run: Path, data: list[str] | None = None, beta: float = 1.0):
    from polypseg.evaluate import tune_threshold

    return tune_threshold(run, data or None, beta)


@app.command()
def tune(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="Data (default: the run's).")] = None,
    beta: Annotated[float, typer.Option(help="Maximise mean F-beta (1 = Dice; >1 favours recall).")] = 1.0,
) -> None:
    """Choose the decision threshold on the VALIDATION split and store it in the checkpoint."""
    from polypseg.data.errors import DataError

    try:
        sw = _tune(run, data, beta)
    except (DataError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    i = int(abs(sw.thresholds - sw.best).argmin())
    j = int(abs(sw.thresholds - 0.5).argmin())
    console.print(
        f"threshold {sw.best:.3f}: validation mDice {sw.dice[i]:.4f} (at 0.5: {sw.dice[j]:.4f}); "
        "stored in the checkpoint"
    )


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
    from polypseg.evaluate import evaluate as run_eval

    try:
        res = run_eval(run, data or None, split, out, threshold, tta)
    except (DataError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    _print_summary(res.summary, f"{split} split")
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
        _fail(exc)
    console.print(f"report: {path}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for masks and overlays.")],
    threshold: Annotated[float | None, typer.Option(help="Override the checkpoint's threshold.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Flip test-time augmentation.")] = False,
    precision: Annotated[
        str,
        typer.Option(help="auto (bf16 where the device has bf16 units: about 2x faster), 32 or bf16."),
    ] = "auto",
) -> None:
    """Write a 0/255 mask PNG (at each input's size) and an overlay PNG per image."""
    from polypseg.data.errors import DataError
    from polypseg.predict import predict as run_predict

    try:
        if precision not in ("auto", "32", "bf16"):
            raise ValueError(f"--precision must be auto, 32 or bf16, got {precision!r}")
        bf16 = None if precision == "auto" else precision == "bf16"
        written = run_predict(run, inputs, out, threshold, tta, bf16)
    except (DataError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    console.print(f"wrote {len(written)} masks and overlays to {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    n: Annotated[int, typer.Option(help="Synthetic frames (75/10/15 % train/val/test).")] = 400,
    size: Annotated[int, typer.Option(help="Synthetic frame size (pixels).")] = 128,
    epochs: Annotated[int | None, typer.Option(help="Override the quick recipe's epochs.")] = None,
) -> None:
    """Train the quick recipe on the built-in synthetic set, tune the threshold on its validation
    split, evaluate on its held-out test split, write the report and a few overlays: everything a
    first-time user needs to see, in a few minutes on a CPU."""
    import shutil

    from polypseg.config import load_recipe
    from polypseg.data.sources import discover
    from polypseg.evaluate import evaluate as run_eval
    from polypseg.predict import predict as run_predict
    from polypseg.report import make_report
    from polypseg.train import fit

    _quiet_lightning()
    if out.exists():
        console.print(f"removing the previous demo run in {out}")
        shutil.rmtree(out)
    data = [f"synthetic:n={n},size={size}"]
    console.rule("1/3 training (recipe 'quick' on the synthetic set)")
    result = fit(load_recipe("quick", {"epochs": epochs}), data, out)
    sw = _tune(out)
    console.print(f"threshold tuned on the validation split: {sw.best:.3f}")
    console.rule("2/3 evaluating on the held-out test split")
    res = run_eval(out, data, "test")
    _print_summary(res.summary, "held-out synthetic test split")
    report_path = make_report(out, "test", res.out_dir, data)
    console.rule("3/3 predicting overlays for a few test images")
    test_images = [s.image for s in discover(data[0]) if s.split == "test"][:6]
    run_predict(out, test_images, out / "overlays")
    dice = res.summary["metrics"]["mean"]["dice"]
    console.print(
        f"[bold green]demo done[/]: held-out synthetic mDice {dice:.4f} "
        f"(best validation Dice {result.best_val_dice:.4f}). Run folder: {out}; report: {report_path}"
    )


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
) -> None:
    """Export the model to ONNX (self-describing; predict and evaluate accept the .onnx file)."""
    from polypseg.export import export_onnx

    try:
        path = export_onnx(run, out, opset)
    except (ImportError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    console.print(f"exported {path}")


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

    from polypseg.compare import compare as compare_evals

    try:
        r = compare_evals(a, b, split, metric)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
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


@data_app.command("check")
def data_check(
    paths: Annotated[list[str], typer.Argument(help="Data folders, .npz files or 'synthetic'.")],
    layout: Annotated[str | None, typer.Option(help="Force a data layout instead of detecting it.")] = None,
    foreground_labels: Annotated[
        str | None, typer.Option(help="Mask labels that count as polyp in multi-label masks, e.g. '1,2'.")
    ] = None,
) -> None:
    """Read every pair once; print counts per split, sizes, mask coverage and every problem.
    Exits 0 only when the data is usable."""
    from polypseg.data.check import check_data
    from polypseg.data.errors import DataError

    try:
        r = check_data(paths, layout, _labels(foreground_labels))
    except DataError as exc:
        _fail(exc)
    table = Table(title="pairs")
    table.add_column("source / split")
    table.add_column("pairs", justify="right")
    for key, n in r.counts.items():
        table.add_row(key, str(n))
    table.add_row("[bold]total[/]", f"[bold]{r.n_pairs}[/]")
    console.print(table)
    if r.n_pairs:
        console.print(
            f"image size: width {r.width_range[0]}-{r.width_range[1]}, height {r.height_range[0]}-"
            f"{r.height_range[1]} px; masks: {r.empty_masks} empty, foreground fraction mean "
            f"{r.fg_fraction_mean:.3f} (range {r.fg_fraction_range[0]:.3f}-{r.fg_fraction_range[1]:.3f})"
        )
    for kind, n in r.note_counts.items():
        console.print(f"note: {n} file(s): {kind}")
    if r.problems:
        console.print(f"[bold red]{len(r.problems)} problem(s):[/]")
        for p in r.problems:
            console.print(f"  - {p}", markup=False, soft_wrap=True)
        raise typer.Exit(code=1)
    console.print("[bold green]usable[/]")


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Argument(help="Folder to write (train/ val/ test/ with images/ masks/).")],
    n: Annotated[int, typer.Option(help="Number of frames.")] = 400,
    size: Annotated[int, typer.Option(help="Frame size (pixels).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Write the built-in synthetic set to a folder."""
    from polypseg.data.synthetic import write_synthetic

    if out.exists():
        _fail(FileExistsError(f"{out} exists; choose a new folder"))
    write_synthetic(out, n=n, size=size, seed=seed)
    console.print(f"wrote {n} synthetic frames to {out}")


@data_app.command("cache")
def data_cache(
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove entries (all, or with --older-than); never a build still running.")
    ] = False,
    older_than: Annotated[
        float | None, typer.Option(help="With --clear: only entries unused for more than this many days.")
    ] = None,
) -> None:
    """List the decoded-data cache ($POLYPSEG_CACHE or ~/.cache/polypseg) and optionally clear it.
    Runs rebuild what they need; clearing loses no results."""
    from datetime import datetime

    from polypseg.data.cache import cache_root, clear_cache, list_cache

    if older_than is not None and not clear:
        _fail(ValueError("--older-than only applies with --clear"))
    entries = clear_cache(older_than_days=older_than) if clear else list_cache()
    table = Table(title=f"{'removed from' if clear else 'cache'} {cache_root() / 'arrays'}")
    for col in ("entry", "size px", "pairs", "MB", "last used"):
        table.add_column(col, justify="left" if col in ("entry", "last used") else "right")
    for e in entries:
        used = datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        size = str(e.size) if e.complete else "building now" if e.building else "interrupted build"
        table.add_row(e.path.name, size, str(e.n_pairs), f"{e.n_bytes / 2**20:.1f}", used)
    console.print(table)
    console.print(f"{len(entries)} entries, {sum(e.n_bytes for e in entries) / 2**20:.1f} MB")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
