"""``make_report``: a self-contained ``report.html`` (figures embedded) plus the PNG figures."""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from polypseg.atomic import atomic_write_text
from polypseg.checkpoint import run_dir_of
from polypseg.evaluation.metrics import METRIC_NAMES
from polypseg.report import figures
from polypseg.report.findings import derive_findings
from polypseg.report.inputs import report_inputs
from polypseg.report.overlays import render_cases
from polypseg.zoo import resolve_model

#: Test figures of the original student report (seed recipe), as quoted in the project brief: its
#: metrics were averaged wrongly (batch sums over images) and its augmentation moved only the image.
ORIGINAL_REPORT = {"dice": 0.28, "accuracy": 0.05, "precision": 0.01}
#: MedSegBench's own U-Net baseline on PolypGenMSBench (test F1), as quoted in the project brief.
MEDSEGBENCH_UNET_F1 = 0.67

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;
padding:0 16px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.fig{display:inline-block;margin:6px;vertical-align:top}.fig img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:.9em}.case{margin:10px 0}.case img{max-width:100%}
li{margin:4px 0}code{background:#f5f5f5;padding:1px 4px}
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    numeric = {"height", "width", "gt_fraction", "pred_fraction", "tp", "fp", "fn", "tn", *METRIC_NAMES}
    for r in rows:
        for k in r:
            if k in numeric or k in ("s_measure", "weighted_f", "mean_e_measure", "mae"):
                r[k] = float(r[k])
    return rows


def make_report(
    run_or_ckpt: str | Path,
    split: str = "test",
    eval_dir: str | Path | None = None,
    data: Sequence[str] | None = None,
    layout: str | None = None,
    foreground_labels: Sequence[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``report.html`` and its PNG figures into the evaluation folder; returns the HTML path.

    Reuses the folder's ``summary.json`` only when it is of ``data`` (default: the data it records) read with
    ``layout``; otherwise runs :func:`polypseg.evaluation.evaluate` first and says why through ``log`` (see
    :func:`polypseg.report.inputs.report_inputs`). ``foreground_labels`` default to the checkpoint's recipe's,
    the labels evaluation scores with.
    """
    from polypseg.paths import read_metrics

    ckpt = resolve_model(run_or_ckpt)
    run_dir = run_dir_of(ckpt)
    if eval_dir is None:
        eval_dir = (run_dir / "eval" / split) if run_dir is not None else ckpt.parent / f"eval-{split}"
    eval_dir = Path(eval_dir)
    inputs = report_inputs(ckpt, split, eval_dir, data, layout, foreground_labels, log)
    summary = inputs.summary
    rows = _read_rows(eval_dir / "per_image.csv")
    fig_dir = eval_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    train_rows = read_metrics(run_dir) if run_dir is not None and (run_dir / "metrics.csv").exists() else []

    figs: list[tuple[str, Path]] = []
    if train_rows:
        figs.append(("Training curves", figures.training_curves(train_rows, fig_dir / "training_curves.png")))
    figs.append(("Dice per image", figures.dice_histogram([r["dice"] for r in rows], fig_dir / "dice_histogram.png")))
    figs.append(
        (
            "Threshold against Dice, precision, recall",
            figures.threshold_curves(summary["sweep"], summary["threshold"], fig_dir / "threshold.png"),
        )
    )
    figs.append(("Precision-recall curve", figures.pr_curve(summary["sweep"], fig_dir / "pr_curve.png")))
    figs.append(
        (
            "Dice by polyp size",
            figures.breakdown_bars(summary["by_size"], "by polyp size", fig_dir / "by_size.png"),
        )
    )
    figs.append(
        (
            "Dice by source",
            figures.breakdown_bars(summary["by_source"], "by source", fig_dir / "by_source.png"),
        )
    )

    cases = render_cases(inputs.predictor, inputs.samples, rows, fig_dir / "cases")
    findings = derive_findings(summary, train_rows)
    recipe_name = summary.get("recipe") or ""
    m, pooled, half = (
        summary["metrics"]["mean"],
        summary["metrics"]["pooled"],
        summary["metrics_at_0.5"]["mean"],
    )

    header = [
        "metric",
        f"mean over images (t={summary['threshold']:.3f})",
        "pooled over pixels",
        "mean over images (t=0.5)",
    ]
    if recipe_name == "seed":
        header.append("original report (test)")
    metric_rows = []
    for name in METRIC_NAMES:
        row = [name, f"{m[name]:.4f}", f"{pooled[name]:.4f}", f"{half[name]:.4f}"]
        if recipe_name == "seed":
            row.append(f"{ORIGINAL_REPORT[name]:.2f}" if name in ORIGINAL_REPORT else "not given")
        metric_rows.append(row)
    structure_rows = [[k, f"{v:.4f}"] for k, v in summary["structure"].items()]
    size_rows = [[k, str(v["n"]), f"{v['dice']:.4f}", f"{v['iou']:.4f}"] for k, v in summary["by_size"].items()]
    source_rows = [[k, str(v["n"]), f"{v['dice']:.4f}", f"{v['iou']:.4f}"] for k, v in summary["by_source"].items()]
    bins = ", ".join(f"{k} [{lo:.2f}, {hi:.2f})" for k, (lo, hi) in summary["size_bins"].items())
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if run_dir is not None else {}
    env = json.loads((run_dir / "env.json").read_text()) if run_dir and (run_dir / "env.json").exists() else {}

    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>polypseg report: "
        f"{html.escape(str(run_dir or ckpt))}</title><style>{CSS}</style></head><body>",
        f"<h1>polypseg report</h1><p><b>Run</b> {html.escape(str(run_dir or ckpt))}<br><b>Recipe</b> "
        f"{html.escape(recipe_name)}<br><b>Data</b> {html.escape(', '.join(summary['data']))}<br><b>Split</b> "
        f"{html.escape(summary['split'])} ({summary['metrics']['n_images']} images, scored at original "
        f"resolution)<br><b>Threshold</b> {summary['threshold']:.3f} ({html.escape(summary['threshold_source'])})"
        f"<br><b>Written</b> {time.strftime('%Y-%m-%d %H:%M')}</p>",
        "<h2>Metrics</h2>",
        _table(header, metric_rows),
        f"<p class='note'>{html.escape(summary['averaging'])}. {html.escape(summary['empty_rule'])}</p>",
    ]
    if "ci95" in summary:
        ci = summary["ci95"]
        parts.append(
            f"<p class='note'>95% intervals over images: mDice [{ci['dice'][0]:.4f}, {ci['dice'][1]:.4f}], mIoU "
            f"[{ci['iou'][0]:.4f}, {ci['iou'][1]:.4f}] ({html.escape(ci['method'])}): how far the mean could move "
            "on another draw of images like these; it does not cover seed-to-seed training variation.</p>"
        )
    if recipe_name == "seed":
        parts.append(
            "<p class='note'>Original report: test F1 0.28, accuracy 0.05, precision 0.01 (averaged wrongly, "
            f"augmentation that moved only the image). MedSegBench's U-Net baseline: F1 {MEDSEGBENCH_UNET_F1}.</p>"
        )
    parts += [
        "<h2>Structure metrics</h2>",
        _table(["metric", "value"], structure_rows),
        "<p class='note'>Computed with pysodmetrics (the PraNet MATLAB toolbox's definitions): S-measure "
        "alpha 0.5, weighted F, mean / max E-measure, MAE; toolbox Dice / IoU: per-image min-max normalised "
        "maps, 256 thresholds, mean and max over thresholds.</p>",
        "<h2>Findings</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ul>",
        "<h2>Figures</h2>",
        "".join(f"<div class='fig'><div>{html.escape(t)}</div>{_img_tag(p, t)}</div>" for t, p in figs),
        "<h2>Breakdown by polyp size</h2>",
        _table(["size class", "images", "mean Dice", "mean IoU"], size_rows),
        f"<p class='note'>Ground-truth area as a fraction of the image: {html.escape(bins)}.</p>",
        "<h2>Breakdown by source</h2>",
        _table(["source", "images", "mean Dice", "mean IoU"], source_rows),
        "<h2>Cases: best, median, worst</h2><p class='note'>image | ground truth | prediction: true positive "
        "green, false positive red, false negative blue.</p>",
        "".join(
            f"<div class='case'><b>{kind}</b> {html.escape(str(row['id']))}: Dice {row['dice']:.3f}, IoU "
            f"{row['iou']:.3f}<br>{_img_tag(path, str(row['id']))}</div>"
            for kind, row, path in cases
        ),
        "<h2>Configuration</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>",
        "<h2>Environment</h2><pre>" + html.escape(json.dumps(env.get("versions", {}), indent=1)) + "</pre>",
        "</body></html>",
    ]
    out = eval_dir / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out
