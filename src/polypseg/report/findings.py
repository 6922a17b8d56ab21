"""Findings derived from the numbers, each pointing to the recipe knobs that address it."""

from __future__ import annotations

from typing import Any


def derive_findings(summary: dict[str, Any], train_rows: list[dict[str, float]] | None = None) -> list[str]:
    """Plain-language findings from an evaluation summary (and the training curve when given).

    Every rule is a comparison of measured numbers; nothing is asserted that the numbers do not show.
    """
    out: list[str] = []
    m = summary["metrics"]["mean"]
    pooled = summary["metrics"]["pooled"]
    if m["precision"] < m["recall"] - 0.1:
        out.append(
            f"Many false positives: mean precision {m['precision']:.3f} is well below mean recall "
            f"{m['recall']:.3f}. Knobs: a higher threshold (polypseg tune), loss 'tversky' with alpha > beta, "
            "'strong' augmentation (more varied mucosa, fewer look-alikes)."
        )
    elif m["recall"] < m["precision"] - 0.1:
        out.append(
            f"Missed polyp pixels: mean recall {m['recall']:.3f} is well below mean precision "
            f"{m['precision']:.3f}. Knobs: a lower threshold (polypseg tune --beta 2), loss 'tversky' with "
            "beta > alpha, 'bce' with pos_weight > 1, or 'focal'."
        )
    sizes = summary.get("by_size", {})
    if "small" in sizes and sizes["small"]["n"] >= 3 and sizes["small"]["dice"] < m["dice"] - 0.1:
        out.append(
            f"Weak on small polyps: mean Dice {sizes['small']['dice']:.3f} on {sizes['small']['n']} small "
            f"polyps against {m['dice']:.3f} overall. Knobs: a larger training size (data.size), "
            "multi-scale training, deep supervision, the 'structure' loss."
        )
    sources = {k: v for k, v in summary.get("by_source", {}).items() if v["n"] >= 3}
    if len(sources) > 1:
        lo = min(sources, key=lambda k: sources[k]["dice"])
        hi = max(sources, key=lambda k: sources[k]["dice"])
        if sources[hi]["dice"] - sources[lo]["dice"] > 0.1:
            out.append(
                f"Uneven across sources: mean Dice {sources[lo]['dice']:.3f} on {lo} against "
                f"{sources[hi]['dice']:.3f} on {hi}. Knobs: train on more centres, 'strong' augmentation "
                "(colour and contrast), grouped splits so validation reflects the unseen source."
            )
    if pooled["dice"] > m["dice"] + 0.1:
        out.append(
            f"Pooled Dice {pooled['dice']:.3f} is much higher than the per-image mean {m['dice']:.3f}: "
            "large polyps are segmented well while some images fail almost completely; look at the worst cases."
        )
    empty = summary.get("n_empty_gt", 0)
    if empty:
        out.append(f"{empty} image(s) have an empty ground truth; they score 1 only when nothing is predicted.")
    thr = summary.get("threshold", 0.5)
    half = summary.get("metrics_at_0.5")
    if half is not None and abs(thr - 0.5) > 1e-9:
        delta = m["dice"] - half["mean"]["dice"]
        out.append(
            f"The threshold tuned on validation ({thr:.3f}) changes mean Dice by {delta:+.4f} on this split "
            "compared with 0.5."
        )
    if train_rows:
        last = train_rows[-1]
        best = max(train_rows, key=lambda r: r["val_dice"])
        if last["val_loss"] > 1.3 * min(r["val_loss"] for r in train_rows) and last["train_loss"] < best["train_loss"]:
            out.append(
                "Validation loss rose while training loss kept falling (over-fitting): more augmentation "
                "('strong'), weight decay, fewer epochs or EMA of weights."
            )
        if best["epoch"] >= train_rows[-1]["epoch"] - 1 and len(train_rows) > 2:
            out.append(
                "Validation Dice was still at its best in the last epochs: the run has not converged; "
                "more epochs (or --resume --epochs N) should help."
            )
    if not out:
        out.append("No weakness stands out in these numbers.")
    return out
