"""Turn a trained PolypGen run into the model shipped inside polypseg (``src/polypseg/zoo/``).

    python benchmarks/ship_model.py RUN --name polyp-unet16 [--data-root ../shared/data] [--tta]

Steps, each printed and recorded in the model card:
1. tune the threshold on the run's validation images (PolypGen val, 140 frames) and store it in best.ckpt;
2. write the weights as float16 safetensors and measure what that costs: validation mDice of the fp16
   weights against the fp32 checkpoint, same threshold, same images (the card states both);
3. score the fp16 model on external sets it never saw, whole: Kvasir-SEG (900) and CVC-ClinicDB (550)
   from ``../shared/data/polyp-train`` (they are refused if they share an image with the run's data);
4. with ``--tta``: tune a second threshold on flip-TTA probabilities of the same validation images (stored
   beside the plain one: ``predict --model NAME --tta`` uses it) and score validation and the external
   sets with TTA as well (the card's ``figures_tta``);
5. write ``<name>.json`` and ``<name>.md`` (the model card) beside the weights.

Only PolypGen (CC BY 4.0) may train a shipped model: Kvasir-SEG and CVC-ClinicDB forbid commercial use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from polypseg import zoo
from polypseg.atomic import atomic_write_text
from polypseg.config import Recipe
from polypseg.evaluation import evaluate, tune_threshold
from polypseg.paths import RunPaths, read_metrics
from polypseg.recipe_identity import builtin_recipe_for
from polypseg.training.env import training_cpu, training_precision

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "polypseg" / "zoo"
ATTRIBUTION = (
    "Ali, S. et al. A multi-centre polyp detection and segmentation dataset for generalisability assessment. "
    "Scientific Data 10, 75 (2023). https://doi.org/10.1038/s41597-023-01981-y"
)


def scores(summary: dict) -> dict:
    m, st = summary["metrics"]["mean"], summary["structure"]
    return {
        "images": summary["metrics"]["n_images"],
        "mdice": m["dice"],
        "miou": m["iou"],
        "mdice_ci95": summary["ci95"]["dice"],
        "weighted_f": st.get("weighted_f"),
        "s_measure": st.get("s_measure"),
        "mean_e": st.get("mean_e_measure"),
        "mae": st.get("mae"),
    }


EXTERNAL = (("Kvasir-SEG", "polyp-train/kvasir"), ("CVC-ClinicDB", "polyp-train/clinicdb"))


def describe(model: dict, parameters: int) -> str:
    """The card's one-line summary from the recipe's ``model`` section and the parameter count."""
    args = model.get("args", {})
    names = {"unet": "U-Net", "attention_unet": "Attention U-Net", "resunet": "residual-encoder U-Net"}
    parts = [f"base {args['base']}" if "base" in args else "", f"depth {args['depth']}" if "depth" in args else ""]
    if int(args.get("stem_stride", 1)) > 1:
        parts.append(f"stride-{int(args['stem_stride'])} stem")
    parts.append(f"{parameters / 1e6:.1f} M parameters")
    return (
        f"{names.get(model['name'], model['name'])} ({', '.join(x for x in parts if x)}) for binary polyp "
        "segmentation in colonoscopy frames, trained from scratch on PolypGen's training frames only."
    )


def score_sets(weights: Path, run: RunPaths, frozen: dict, data_root: Path, tta: bool) -> tuple[dict, dict]:
    """Validation scores of the shipped fp16 ``weights`` and external-set scores of the run's fp32 checkpoint
    (through the run folder, so that a set sharing an image with the training data is refused), each at
    its stored threshold for the mode (``tta``: flip TTA and the TTA threshold)."""
    suffix = "-tta" if tta else ""
    val = evaluate(weights, [str(d) for d in frozen["data"]], split="val", tta=tta,
                   out_dir=run.root / "eval" / f"val-fp16{suffix}").summary  # fmt: skip
    external = {}
    for name, folder in EXTERNAL:
        out = run.root / "eval" / f"external-{name}{suffix}"
        res = evaluate(run.root, [str(data_root / folder)], tta=tta, out_dir=out)
        assert res.summary["selection"]["kind"] == "external", res.summary["selection"]
        external[name] = scores(res.summary)
        print(f"{name}{' with TTA' if tta else ''}: {external[name]['images']} images, "
              f"mDice {external[name]['mdice']:.4f}")  # fmt: skip
    return val, external


def figures(val: dict, external: dict) -> dict:
    """The card's figures: validation and external scores, the mean over sets and the image-weighted mean."""
    n_ext = sum(e["images"] for e in external.values())
    return {
        "validation_mdice": val["metrics"]["mean"]["dice"],
        "validation": scores(val),
        "external": external,
        "external_mean_mdice": sum(e["mdice"] for e in external.values()) / len(external),
        "external_image_weighted_mdice": sum(e["mdice"] * e["images"] for e in external.values()) / n_ext,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="polyp-unet16")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out-dir", type=Path, default=ZOO)
    ap.add_argument("--budget-minutes", type=float, default=None, help="for runs whose config.yaml lacks it")
    ap.add_argument("--tta", action="store_true", help="also tune a flip-TTA threshold and score with TTA")
    args = ap.parse_args()
    run = RunPaths(args.run)
    frozen = yaml.safe_load(run.config.read_text())
    rows = read_metrics(run.root)
    env = json.loads(run.env.read_text())
    budget = frozen.get("max_minutes") or args.budget_minutes
    if budget is None:  # checked before any work: the card states the budget
        raise SystemExit(f"{run.config} has no max_minutes: give the run's budget with --budget-minutes")

    sweep = tune_threshold(run.root)
    print(f"threshold tuned on validation: {sweep.best:.3f}")
    sweep_tta = tune_threshold(run.root, tta=True) if args.tta else None
    if sweep_tta is not None:
        print(f"flip-TTA threshold tuned on validation: {sweep_tta.best:.3f}")
    fp32 = evaluate(run.root, split="val", out_dir=run.root / "eval" / "val-fp32").summary
    weights = zoo.write_shipped_model(run.checkpoint("best"), args.name, {}, args.out_dir, dtype=torch.float16)
    card_path = weights.with_suffix(".json")
    fp16, external = score_sets(weights, run, frozen, args.data_root, tta=False)
    print(f"validation mDice fp32 {fp32['metrics']['mean']['dice']:.4f}, fp16 {fp16['metrics']['mean']['dice']:.4f}")
    recipe = frozen["recipe"]
    parameters = sum(
        t.numel() for t in zoo.state_dict(zoo.ShippedModel(args.name, {}, weights)).values() if t.is_floating_point()
    )
    size = recipe["data"]["size"]
    training_seconds = sum(r.get("seconds", 0) for r in rows)
    tuned = "tuned on PolypGen val (max mean Dice, nearest 0.5 within 0.005)"
    card = {
        "name": args.name,
        "summary": describe(recipe["model"], parameters),
        "architecture": {
            "model": recipe["model"]["name"],
            "args": recipe["model"]["args"],
            "parameters": parameters,
            "input": f"RGB resized to {size} x {size}, ImageNet mean/std",
            "output": "one logit map; sigmoid > threshold is polyp",
        },
        "training_data": {
            "name": "PolypGen (EndoCV2021), single frames, MedSegBench 256 px, train split (984 frames)",
            "licence": "CC BY 4.0",
            "attribution": ATTRIBUTION,
            "validation": "PolypGen val split (140 frames): model selection and the threshold",
        },
        "recipe": {
            "name": builtin_recipe_for(Recipe.model_validate(recipe)) or f"{recipe['name']} (modified)",
            "epochs_trained": len(rows),
            "best_epoch": int(torch.load(run.checkpoint("best"), weights_only=True)["polypseg"]["epoch"]),
            "budget_minutes": budget,
            "size": size,
            "precision": training_precision(env),
            "seed": recipe["seed"],
        },
        "compute": {"cpu": training_cpu(env), "training_hours": round(training_seconds / 3600, 2)},
        "threshold": {"value": sweep.best, "source": tuned},
        "weights_dtype": "float16",
        "figures": {
            **figures(fp16, external),
            "validation_fp32_mdice": fp32["metrics"]["mean"]["dice"],
            "fp16_minus_fp32_mdice": fp16["metrics"]["mean"]["dice"] - fp32["metrics"]["mean"]["dice"],
            "protocol": "per image at original resolution, then averaged; external sets scored whole (with the "
            "fp32 checkpoint; validation with the shipped fp16 weights); threshold as stored; structure metrics "
            "from pysodmetrics",
        },
        "intended_use": "Research and education: trying polypseg on colonoscopy frames, a starting point for "
        "fine-tuning (train --init). Not a medical device; not for diagnosis or any clinical decision.",
        "limits": [
            f"Trained on 984 frames at {size} px from the six centres of one challenge data set; it has not been "
            "measured on other endoscopes, NBI or video sequences.",
            "External figures are on the public Kvasir-SEG and CVC-ClinicDB training images, not on the held-out "
            "PraNet test sets, which are not available here.",
            "One seed; no calibration of the probabilities beyond the tuned threshold.",
        ],
    }
    if sweep_tta is not None:
        card["threshold_tta"] = {"value": sweep_tta.best, "source": tuned + ", flip TTA (use with --tta)"}
        card["figures_tta"] = figures(*score_sets(weights, run, frozen, args.data_root, tta=True))
    # again with the whole card (the figures need the weights written first); best.ckpt holds the tuned threshold
    zoo.write_shipped_model(run.checkpoint("best"), args.name, card, args.out_dir, dtype=torch.float16)
    atomic_write_text(card_path.with_suffix(".md"), markdown(json.loads(card_path.read_text())))
    print(json.dumps(card["figures"], indent=1))


def markdown(card: dict) -> str:
    """The model card for people, from the JSON card."""
    f, a, t, r = card["figures"], card["architecture"], card["training_data"], card["recipe"]
    lines = [
        f"# {card['name']}", "", card["summary"], "",
        "## Intended use", "", card["intended_use"], "",
        "## Model", "",
        f"- {a['model']} {a['args']}, {a['parameters']:,} parameters, weights stored as {card['weights_dtype']}",
        f"- input: {a['input']}; output: {a['output']}",
        f"- threshold {card['threshold']['value']:.3f}: {card['threshold']['source']}",
        *([f"- flip-TTA threshold {card['threshold_tta']['value']:.3f}: {card['threshold_tta']['source']}"]
          if "threshold_tta" in card else []), "",
        "## Training", "",
        f"- data: {t['name']}; validation: {t['validation']}",
        f"- licence: {t['licence']}. Attribution: {t['attribution']}",
        f"- recipe `{r['name']}` at {r['size']} px, seed {r['seed']}, precision {r['precision']}: "
        f"{r['epochs_trained']} epochs (best epoch {r['best_epoch']}) within a {r['budget_minutes']:g}-minute budget",
        f"- compute: {card['compute']['cpu']}, {card['compute']['training_hours']} h of training", "",
        "## Figures", "", f"Protocol: {f['protocol']}.", "",
        "| set | images | mDice [95 % CI] | mIoU | weighted F | S-measure | mean E | MAE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    lines += figure_rows(f)
    lines += [
        "",
        f"External sets, mean over sets: mDice {f['external_mean_mdice']:.3f}; image-weighted: "
        f"{f['external_image_weighted_mdice']:.3f}. fp16 weights against the fp32 checkpoint on validation: "
        f"{f['fp16_minus_fp32_mdice']:+.4f} mDice.",
    ]
    if "figures_tta" in card:
        g, t = card["figures_tta"], card["threshold_tta"]
        lines += [
            "", f"With flip TTA (`--tta`; threshold {t['value']:.3f}, {t['source']}):", "",
            "| set | images | mDice [95 % CI] | mIoU | weighted F | S-measure | mean E | MAE |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *figure_rows(g), "",
            f"External sets with TTA, mean over sets: mDice {g['external_mean_mdice']:.3f}; image-weighted: "
            f"{g['external_image_weighted_mdice']:.3f}.",
        ]  # fmt: skip
    lines += ["", "## Known limits", "", *[f"- {x}" for x in card["limits"]], ""]
    return "\n".join(lines)


def figure_rows(f: dict) -> list[str]:
    """Table rows: validation, then each external set."""
    rows = []
    for name, s in [("PolypGen val (validation)", f["validation"]), *f["external"].items()]:
        ci = s["mdice_ci95"]
        rows.append(
            f"| {name} | {s['images']} | {s['mdice']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {s['miou']:.3f} | "
            f"{s['weighted_f']:.3f} | {s['s_measure']:.3f} | {s['mean_e']:.3f} | {s['mae']:.3f} |"
        )
    return rows


if __name__ == "__main__":
    main()
