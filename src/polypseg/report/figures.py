"""Matplotlib figures of a run and its evaluation, each saved as a PNG file (Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from polypseg.atomic import atomic_save


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def training_curves(rows: list[dict[str, float]], path: Path) -> Path:
    """Loss (train, val) and validation Dice / IoU against epoch."""
    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ep, [r["train_loss"] for r in rows], label="train loss")
    a.plot(ep, [r["val_loss"] for r in rows], label="validation loss")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.plot(ep, [r["val_dice"] for r in rows], label="validation Dice")
    b.plot(ep, [r["val_iou"] for r in rows], label="validation IoU")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    b.set_title("validation at training size, threshold 0.5", fontsize=9)
    return _save(fig, path)


def dice_histogram(dice: list[float], path: Path) -> Path:
    """Histogram of per-image Dice."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(dice, bins=np.linspace(0, 1, 21), color="#3b7dd8", edgecolor="white")
    ax.axvline(float(np.mean(dice)), color="black", linestyle="--", label=f"mean {np.mean(dice):.3f}")
    ax.set_xlabel("Dice per image")
    ax.set_ylabel("images")
    ax.legend()
    return _save(fig, path)


def threshold_curves(sweep: dict[str, list[float]], applied: float, path: Path) -> Path:
    """Mean Dice, precision and recall over images against the decision threshold."""
    t = sweep["thresholds"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for key in ("dice", "precision", "recall"):
        ax.plot(t, sweep[key], label=f"mean {key}")
    ax.axvline(applied, color="black", linestyle="--", label=f"applied {applied:.3f}")
    ax.axvline(0.5, color="grey", linestyle=":", label="0.5")
    ax.set_xlabel("threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pr_curve(sweep: dict[str, list[float]], path: Path) -> Path:
    """Mean precision against mean recall over the threshold sweep."""
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.plot(sweep["recall"], sweep["precision"], marker=".")
    ax.set_xlabel("mean recall")
    ax.set_ylabel("mean precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall over thresholds", fontsize=9)
    return _save(fig, path)


def breakdown_bars(groups: dict[str, dict[str, Any]], title: str, path: Path) -> Path:
    """Mean Dice per group (size class or source), with the image count on each bar."""
    names = list(groups)
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names) + 2), 3.4))
    vals = [groups[n]["dice"] for n in names]
    bars = ax.bar(names, vals, color="#5aa469")
    for bar, n in zip(bars, names, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + 0.02,
            f"n={groups[n]['n']}",
            ha="center",
            fontsize=8,
        )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mean Dice")
    ax.set_title(title, fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    return _save(fig, path)
