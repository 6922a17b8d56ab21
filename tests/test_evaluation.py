"""Evaluation metrics against references (NumPy, pysodmetrics) and threshold tuning."""

import json
from pathlib import Path

import numpy as np
import py_sod_metrics as sod
import pytest

from polypseg.checkpoint import load_checkpoint
from polypseg.evaluation.metrics import image_metrics
from polypseg.evaluation.structure import StructureMetrics, to_uint8_map
from polypseg.evaluation.threshold import SweepAccumulator, sweep


def _cases(seed: int = 0, n: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        h, w = rng.integers(16, 48, 2)
        gt = (rng.random((h, w)) > rng.uniform(0.5, 0.95)).astype(np.uint8)
        prob = np.clip(gt * rng.uniform(0.3, 0.9) + rng.random((h, w)) * 0.5, 0, 1)
        if i == 0:
            gt[:] = 0  # empty ground truth
        if i == 1:
            gt[:] = 1  # full ground truth
        if i == 2:
            prob[:] = 0.0  # empty (constant) prediction
        if i == 3:
            prob[:] = 1.0  # full prediction
        cases.append((prob.astype(np.float32), gt))
    return cases


def _reference_ratio(num: float, den: float, perfect: bool) -> float:
    return (1.0 if perfect else 0.0) if den == 0 else num / den


@pytest.mark.parametrize("seed", range(3))
def test_confusion_metrics_match_numpy_reference(seed: int) -> None:
    for prob, gt in _cases(seed):
        pred = prob > 0.5
        g = gt.astype(bool)
        tp, fp = float(np.sum(pred & g)), float(np.sum(pred & ~g))
        fn, tn = float(np.sum(~pred & g)), float(np.sum(~pred & ~g))
        perfect = fp + fn == 0
        ref = {
            "dice": _reference_ratio(2 * tp, 2 * tp + fp + fn, perfect),
            "iou": _reference_ratio(tp, tp + fp + fn, perfect),
            "precision": _reference_ratio(tp, tp + fp, perfect),
            "recall": _reference_ratio(tp, tp + fn, perfect),
            "specificity": _reference_ratio(tn, tn + fp, perfect),
            "accuracy": (tp + tn) / g.size,
        }
        ours = image_metrics(pred, gt)
        for k, v in ref.items():
            assert ours[k] == pytest.approx(v, abs=1e-9), k


def test_structure_metrics_equal_pysodmetrics_own_aggregation() -> None:
    ours = StructureMetrics()
    ref = {"sm": sod.Smeasure(), "wfm": sod.WeightedFmeasure(), "em": sod.Emeasure(), "mae": sod.MAE()}
    ref_fm = sod.FmeasureV2(
        metric_handlers={
            "dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
            "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False),
        }
    )
    per_image = []
    for prob, gt in _cases(7):
        per_image.append(ours.step(prob, gt))
        p, g = to_uint8_map(prob), gt.astype(np.uint8) * 255
        for m in (*ref.values(), ref_fm):
            m.step(p, g)
    got = ours.results()
    em_curve = ref["em"].get_results()["em"]["curve"]
    fm = ref_fm.get_results()
    expected = {
        "s_measure": ref["sm"].get_results()["sm"],
        "weighted_f": ref["wfm"].get_results()["wfm"],
        "mean_e_measure": em_curve.mean(),
        "max_e_measure": em_curve.max(),
        "mae": ref["mae"].get_results()["mae"],
        "toolbox_mean_dice": fm["dice"]["dynamic"].mean(),
        "toolbox_max_dice": fm["dice"]["dynamic"].max(),
        "toolbox_mean_iou": fm["iou"]["dynamic"].mean(),
        "toolbox_max_iou": fm["iou"]["dynamic"].max(),
    }
    for k, v in expected.items():
        assert got[k] == pytest.approx(float(v), abs=1e-6), k
    # per-image values average to the data-set values
    assert np.mean([r["s_measure"] for r in per_image]) == pytest.approx(got["s_measure"], abs=1e-9)
    assert np.mean([r["mae"] for r in per_image]) == pytest.approx(got["mae"], abs=1e-9)
    assert np.mean([r["mean_e_measure"] for r in per_image]) == pytest.approx(got["mean_e_measure"], abs=1e-9)


def test_mae_hand_computed() -> None:
    m = StructureMetrics()
    gt = np.array([[1, 0], [0, 0]], np.uint8)
    # the toolbox min-max normalises the map: [[0.8, 0.2], [0.2, 0.2]] becomes [[1, 0], [0, 0]]
    m.step(np.array([[0.8, 0.2], [0.2, 0.2]], np.float32), gt)
    assert m.results()["mae"] == pytest.approx(0.0)
    assert m.results()["s_measure"] == pytest.approx(1.0)


def test_threshold_sweep_hand_example_and_reference() -> None:
    gt = np.array([[1, 1, 0, 0]], np.uint8)
    prob = np.array([[0.9, 0.31, 0.19, 0.1]], np.float32)
    sw = sweep([(prob, gt)])
    # thresholds 0.2 .. 0.3 all give a perfect mask; ties go to the one nearest 0.5
    assert sw.best == pytest.approx(0.3)
    assert sw.dice[np.argmin(abs(sw.thresholds - 0.3))] == pytest.approx(1.0)
    assert sw.dice[np.argmin(abs(sw.thresholds - 0.325))] == pytest.approx(2 / 3)  # only 0.9 left
    # a flat curve keeps 0.5: within the tolerance of the best, the threshold nearest 0.5 wins
    flat_gt = np.array([[1, 0]], np.uint8)
    flat = sweep([(np.array([[0.95, 0.12]], np.float32), flat_gt), (np.array([[0.6, 0.4]], np.float32), flat_gt)])
    assert flat.best == pytest.approx(0.5)
    strict = sweep(
        [(np.array([[0.95, 0.12]], np.float32), flat_gt), (np.array([[0.6, 0.4]], np.float32), flat_gt)], tolerance=0.0
    )
    assert 0.4 <= strict.best < 0.6
    cases = _cases(3)
    sw = sweep(cases)
    for i in (0, 10, 18, 30):
        t = sw.thresholds[i]
        ref = np.mean([image_metrics(p > t, g)["dice"] for p, g in cases])
        assert sw.dice[i] == pytest.approx(ref, abs=1e-12)


def test_cross_tuned_threshold_scores_each_fold_at_the_other_folds_threshold() -> None:
    """Two kinds of image alternate: 'low' (polyp 0.36, background 0.24: perfect for t in 0.25..0.35) and
    'high' (0.81 / 0.64: perfect for t in 0.65..0.8). Fold 0 (the low images) is scored at the high images'
    threshold 0.65 (nothing predicted: Dice 0) and fold 1 at 0.35 (everything: Dice 2/3), so the honest
    estimate is 1/3, though tuning in-sample would look far better."""
    gt = np.array([[1, 1, 0, 0]], np.uint8)
    low = np.where(gt == 1, 0.36, 0.24).astype(np.float32)
    high = np.where(gt == 1, 0.81, 0.64).astype(np.float32)
    acc = SweepAccumulator()
    for prob in (low, high, low, high):
        acc.add(prob, gt)
    rows, chosen = acc.cross_tuned(folds=2)
    assert chosen == [pytest.approx(0.65), pytest.approx(0.35)]
    assert [r["dice"] for r in rows] == pytest.approx([0.0, 2 / 3, 0.0, 2 / 3])
    assert rows[1] == {**image_metrics(high > 0.35, gt)}
    assert acc.result().dice.max() > np.mean([r["dice"] for r in rows])
    with pytest.raises(ValueError, match="at least 3 images"):
        SweepAccumulator().cross_tuned(folds=3)


@pytest.mark.slow
def test_tune_then_evaluate_applies_threshold(tmp_path: Path) -> None:
    from polypseg.config import load_recipe
    from polypseg.evaluation import evaluate, tune_threshold
    from polypseg.training import fit

    recipe = load_recipe("quick", {"epochs": 1, "data.size": 64, "model.args.base": 8})
    run = fit(recipe, ["synthetic:n=48,size=64,seed=3"], tmp_path / "run", progress=False).run_dir
    sw = tune_threshold(run)
    meta = load_checkpoint(run / "checkpoints" / "best.ckpt").meta
    assert meta["threshold"] == pytest.approx(sw.best)
    assert meta["threshold_source"].startswith("tuned on val")
    saved = json.loads((run / "threshold.json").read_text())
    assert saved["threshold"] == pytest.approx(sw.best)
    assert saved["val_mean_dice_at_best"] >= saved["val_mean_dice_at_0.5"]
    res = evaluate(run, split="test")
    s = res.summary
    assert s["threshold"] == pytest.approx(sw.best) and s["threshold_source"].startswith("tuned")
    assert set(s["structure"]) >= {"s_measure", "weighted_f", "mean_e_measure", "max_e_measure", "mae"}
    assert "metrics_at_0.5" in s and s["by_size"] and s["by_source"]
    ct = s["cross_tuned_threshold"]
    assert len(ct["thresholds"]) == 2 and ct["metrics"]["n_images"] == s["metrics"]["n_images"]
    forced = evaluate(run, split="test", threshold=0.5, out_dir=tmp_path / "forced")
    assert forced.summary["metrics"]["mean"]["dice"] == pytest.approx(s["metrics_at_0.5"]["mean"]["dice"])
    from polypseg.evaluation.compare import compare
    from polypseg.evaluation.stats import bootstrap_ci

    low, high = s["ci95"]["dice"]
    assert (low, high) == bootstrap_ci([r["dice"] for r in res.rows])
    assert low <= s["metrics"]["mean"]["dice"] <= high
    vs = compare(run, tmp_path / "forced")  # the run's tuned threshold against 0.5, the same test images
    assert vs.n_images == s["metrics"]["n_images"]
    assert vs.diff == pytest.approx(s["metrics_at_0.5"]["mean"]["dice"] - s["metrics"]["mean"]["dice"])


@pytest.mark.slow
def test_evaluation_scores_at_the_original_size_not_the_training_size(tmp_path: Path) -> None:
    """Frames of 80x120 (H x W), a model trained at 64x64: per_image.csv rows carry 80 / 120 and each
    Dice is the one of Predictor.predict_mask on the original frame against the original mask."""
    import csv

    import cv2

    from polypseg.config import load_recipe
    from polypseg.data.synthetic import render_frame
    from polypseg.evaluation import evaluate
    from polypseg.inference import Predictor
    from polypseg.training import fit

    data = tmp_path / "wide"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(24):
        image, mask = render_frame(5, i, 128)
        image = cv2.resize(image, (120, 80), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (120, 80), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(data / "images" / f"f{i:02d}.png"), image[..., ::-1])
        cv2.imwrite(str(data / "masks" / f"f{i:02d}.png"), mask * 255)
    recipe = load_recipe("quick", {"epochs": 1, "data.size": 64, "model.args.base": 8, "precision": "32"})
    run = fit(recipe, [str(data)], tmp_path / "run", progress=False).run_dir
    test_ids = json.loads((run / "split.json").read_text())["splits"]["test"]
    assert len(test_ids) == 4

    def read(stem: str) -> tuple[np.ndarray, np.ndarray]:
        image = cv2.imread(str(data / "images" / f"{stem}.png"))[..., ::-1].copy()
        return image, cv2.imread(str(data / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127

    frames = {i: read(i.split("/")[-1]) for i in test_ids}
    # One epoch barely learns, so threshold at the 85th percentile of the test probabilities: the masks
    # are then partial, and their Dice neither 0 nor 1.
    probs = list(Predictor.from_checkpoint(run).predict_proba([image for image, _ in frames.values()]))
    threshold = float(np.quantile(np.concatenate([p.ravel() for p in probs]), 0.85))
    summary = evaluate(run, split="test", threshold=threshold).summary
    assert summary["threshold"] == threshold
    with (run / "eval" / "test" / "per_image.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["id"] for r in rows) == test_ids

    predictor = Predictor.from_checkpoint(run, threshold=threshold)  # fp32, as evaluate uses
    for r in rows:
        image, gt = frames[r["id"]]
        assert (int(r["height"]), int(r["width"])) == (80, 120)
        assert sum(int(r[k]) for k in ("tp", "fp", "fn", "tn")) == 80 * 120
        pred = next(predictor.predict_mask([image])).astype(bool)
        assert pred.shape == (80, 120)
        tp, fp, fn = int(np.sum(pred & gt)), int(np.sum(pred & ~gt)), int(np.sum(~pred & gt))
        assert (int(r["tp"]), int(r["fp"]), int(r["fn"])) == (tp, fp, fn)
        expected = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 1.0  # README: empty and empty -> 1
        assert float(r["dice"]) == pytest.approx(expected, abs=1e-12)
        assert float(r["dice"]) == pytest.approx(image_metrics(pred, gt)["dice"], abs=1e-12)
    assert any(0 < float(r["dice"]) < 1 for r in rows)


TUNED = {"threshold": 0.4, "threshold_source": "tuned on val (9 images, max mean F1)"}
TUNED_BOTH = {**TUNED, "tta_threshold": 0.3, "tta_threshold_source": "tuned on val (9 images, max mean F1, flip TTA)"}
LEGACY_TTA = {"threshold": 0.35, "threshold_source": TUNED_BOTH["tta_threshold_source"], "threshold_tta": True}


@pytest.mark.parametrize(
    ("meta", "tta", "value", "says"),
    [
        ({}, False, 0.5, "recipe"),
        ({}, True, 0.5, "recipe"),
        (TUNED, False, 0.4, "max mean F1)"),
        (TUNED, True, 0.4, "tunes one for flip TTA"),  # a plain threshold on TTA probabilities: said
        (TUNED_BOTH, False, 0.4, "max mean F1)"),
        (TUNED_BOTH, True, 0.3, "flip TTA)"),
        (LEGACY_TTA, True, 0.35, "flip TTA)"),
        (LEGACY_TTA, False, 0.35, "tunes a plain one"),  # the older checkpoints: no longer silent
    ],
)
def test_stored_threshold_is_per_tta_mode_and_says_when_it_is_the_other_modes(
    meta: dict, tta: bool, value: float, says: str
) -> None:
    from polypseg.checkpoint import stored_threshold

    got, source = stored_threshold(meta, tta)
    assert got == pytest.approx(value) and source.endswith(says)


def test_a_predictor_switches_threshold_with_its_tta_mode() -> None:
    from polypseg.inference.predictor import Predictor
    from polypseg.models import build_model

    pred = Predictor(build_model("unet", base=4, depth=2), 32, (0.5,) * 3, (0.25,) * 3, device="cpu")
    pred.use_stored_thresholds(TUNED_BOTH)
    assert (pred.threshold, pred.threshold_source) == (0.4, TUNED["threshold_source"])
    pred.tta = True
    assert (pred.threshold, pred.threshold_source) == (0.3, TUNED_BOTH["tta_threshold_source"])
    pred.threshold = 0.6  # an explicit threshold is both modes'
    assert pred.thresholds == {False: 0.6, True: 0.6} and pred.threshold_source == "argument"
