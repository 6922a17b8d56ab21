"""Commands that train: ``train``, ``tune`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polypseg.cli.common import DataOpt, app, console, labels, print_notes, print_summary, quiet_lightning
from polypseg.errors import InputError

#: ``train`` options that a resumed run takes from its frozen config.yaml and so refuses to change.
FROZEN_ON_RESUME = (
    "--recipe", "--data", "--size", "--batch-size", "--seed", "--precision", "--layout", "--fold",
    "--group-regex", "--group-csv", "--foreground-labels", "--init", "--init-partial", "--logger",
)  # fmt: skip


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (or resume).")],
    data: DataOpt = None,  # type: ignore[assignment]
    recipe: Annotated[
        str | None, typer.Option("--recipe", "-r", help="Built-in recipe name or YAML file (default: quick).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="The recipe's epochs (with --resume: the new total).")] = None,
    size: Annotated[int | None, typer.Option(help="Override the training image size (pixels).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    precision: Annotated[
        str | None, typer.Option(help="Override precision: auto, 32, bf16 or 16 (Lightning names accepted).")
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Total training-time budget in minutes (with --resume: the new total).")
    ] = None,
    devices: Annotated[int, typer.Option(help="Processes (CPU) or GPUs per node; >1 uses DDP.")] = 1,
    num_nodes: Annotated[int, typer.Option(help="Machines (torchrun or SLURM start the processes).")] = 1,
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
    logger: Annotated[
        list[str] | None,
        typer.Option("--logger", help="Also log to tensorboard or mlflow (extras; metrics.csv is always written)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    tune: Annotated[bool, typer.Option(help="Tune the threshold on validation after training.")] = True,
) -> None:
    """Train a model; writes config, split, checkpoints and metrics.csv into --out."""
    from polypseg.config import load_recipe
    from polypseg.training import fit

    quiet_lightning()
    given = [recipe, data, size, batch_size, seed, precision, layout, fold, group_regex, group_csv,
             foreground_labels, init, init_partial or None, logger]  # fmt: skip
    rec = None
    if resume:
        changed = [name for name, value in zip(FROZEN_ON_RESUME, given, strict=True) if value]
        if changed:
            raise InputError(
                f"--resume continues the run with its frozen config.yaml; {', '.join(changed)} cannot change "
                "on resume (only --epochs and --max-minutes extend a run): drop them, or train into a new --out"
            )
    elif not data:
        raise InputError("give --data (or --resume to continue a run)")
    else:
        overrides = {
            "epochs": epochs,
            "data.size": size,
            "data.batch_size": batch_size,
            "seed": seed,
            "precision": precision,
            "data.fold": fold,
            "data.group_regex": group_regex,
            "data.group_csv": group_csv,
            "data.foreground_labels": labels(foreground_labels),
            "init_weights": str(init) if init else None,
            "init_strict": False if init_partial else None,
        }
        rec = load_recipe(recipe or "quick", overrides)
    result = fit(
        rec,
        data or [],
        out,
        resume=resume,
        devices=devices,
        num_nodes=num_nodes,
        accelerator=accelerator,
        max_minutes=max_minutes,
        layout=layout,
        progress=progress,
        epochs=epochs if resume else None,
        loggers=logger or (),
    )
    if tune and result.is_global_zero:
        sw = _tune(out, layout=layout)
        console.print(f"threshold tuned on validation: {sw.best:.3f} (stored in best.ckpt)")
    console.print(
        f"[bold green]done[/]: {result.epochs_done} epochs, best validation Dice {result.best_val_dice:.4f} "
        f"(epoch {result.best_epoch}); run folder {result.run_dir}"
    )


def _tune(run: Path, data: list[str] | None = None, beta: float = 1.0, tta: bool = False, layout: str | None = None):
    from polypseg.evaluation.tune import tune_threshold

    return tune_threshold(run, data or None, beta, layout, tta=tta)


TTA_HELP = "Tune a second threshold, for flip TTA: --tta runs use it, plain runs keep the plain one."


@app.command()
def tune(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="Data (default: the run's).")] = None,
    beta: Annotated[float, typer.Option(help="Maximise mean F-beta (1 = Dice; >1 favours recall).")] = 1.0,
    tta: Annotated[bool, typer.Option("--tta", help=TTA_HELP)] = False,
) -> None:
    """Choose the decision threshold on the run's VALIDATION images and store it in the checkpoint."""
    sw = _tune(run, data, beta, tta)
    i = int(abs(sw.thresholds - sw.best).argmin())
    j = int(abs(sw.thresholds - 0.5).argmin())
    console.print(
        f"threshold {sw.best:.3f}: validation mDice {sw.dice[i]:.4f} (at 0.5: {sw.dice[j]:.4f}); "
        "stored in the checkpoint"
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    n: Annotated[int, typer.Option(help="Synthetic frames (75/10/15 % train/val/test).")] = 400,
    size: Annotated[int, typer.Option(help="Synthetic frame size (pixels).")] = 128,
    epochs: Annotated[int | None, typer.Option(help="Override the quick recipe's epochs.")] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", help="Also run the shipped polyp model on this image (repeat for more)."),
    ] = None,
) -> None:
    """Train the quick recipe on the built-in synthetic set, tune the threshold on its validation
    split, evaluate on its held-out test split, write the report and a few overlays, then run the
    polyp model shipped inside polypseg (trained on real PolypGen frames) on a few synthetic frames and
    on every --image: everything a first-time user needs to see, in a few minutes on a CPU."""
    import shutil

    from polypseg.atomic import atomic_write_text
    from polypseg.config import load_recipe
    from polypseg.data.sources import discover
    from polypseg.evaluation.evaluate import evaluate as run_eval
    from polypseg.inference.predict import predict as run_predict
    from polypseg.paths import DEMO_MARKER
    from polypseg.report import make_report
    from polypseg.training import fit

    quiet_lightning()
    for path in image or []:  # before minutes of training, not after
        if not path.is_file():
            raise InputError(f"--image {path}: no such file; give an image file (PNG, JPEG, TIFF, BMP)")
    marker = out / DEMO_MARKER
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise InputError(
                f"{out} exists and was not made by 'polypseg demo' (no {DEMO_MARKER} in it): nothing was removed. "
                "Choose another --out, or remove the folder yourself"
            )
        console.print(f"removing the previous demo run in {out}")
        shutil.rmtree(out)
    data = [f"synthetic:n={n},size={size}"]
    console.rule("1/4 training (recipe 'quick' on the synthetic set)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, "made by 'polypseg demo': a later 'polypseg demo --out' may remove this folder\n")
    result = fit(load_recipe("quick", {"epochs": epochs}), data, out)
    sw = _tune(out)
    console.print(f"threshold tuned on the validation split: {sw.best:.3f}")
    console.rule("2/4 evaluating on the held-out test split")
    res = run_eval(out, data, "test")
    print_summary(res.summary, "held-out synthetic test split")
    report_path = make_report(out, "test", res.out_dir, data)
    console.rule("3/4 predicting overlays for a few test images")
    test_images = [s.image for s in discover(data[0]) if s.split == "test"][:6]
    run_predict(out, test_images, out / "overlays")
    shipped = _shipped_model_demo(test_images[:3], list(image or []), out / "shipped")
    dice = res.summary["metrics"]["mean"]["dice"]
    console.print(
        f"[bold green]demo done[/]: held-out synthetic mDice {dice:.4f} "
        f"(best validation Dice {result.best_val_dice:.4f}). Run folder: {out}; report: {report_path}"
        + (f"; the shipped model's masks and overlays: {shipped}" if shipped else "")
    )


def _shipped_model_demo(frames: list[Path], images: list[Path], out: Path) -> Path | None:
    """Step 4 of the demo: the first shipped model on ``frames`` and the user's ``images``; prints each
    image's predicted polyp area and returns the folder of masks and overlays (None: no shipped model)."""
    import cv2

    from polypseg.data.errors import ReadNotes
    from polypseg.inference.predict import predict as run_predict
    from polypseg.zoo import available

    models = available()
    if not models:
        return None
    model = models[0]
    figures = model.card.get("figures", {})
    console.rule(f"4/4 the shipped polyp model '{model.name}'")
    console.print(f"on {len(frames)} synthetic frame(s) and {len(images)} image(s) of yours", markup=False)
    console.print(
        f"{model.card.get('summary', model.name)} Validation mDice {figures.get('validation_mdice', float('nan')):.3f}"
        f" on PolypGen; unseen centres: mean {figures.get('external_mean_mdice', float('nan')):.3f} "
        f"(model card: {model.weights.with_suffix('.md')}). Research use only; not a medical device.",
        markup=False, soft_wrap=True,
    )  # fmt: skip
    notes = ReadNotes()
    masks = run_predict(model.name, [*frames, *images], out, notes=notes)
    for source, mask_path in zip([*frames, *images], masks, strict=True):
        fraction = float((cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127).mean())
        kind = "synthetic" if source in frames else "yours"
        console.print(f"  {source.name} ({kind}): polyp area {fraction:.1%} -> {mask_path.name}", markup=False)
    print_notes(notes.counts())
    if frames:
        console.print("(the synthetic frames are drawn shapes, not colonoscopy: the shipped model was trained on real "
                      "frames, so expect its masks there to be rough; give it a real frame with --image)")  # fmt: skip
    return out
