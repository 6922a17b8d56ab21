import numpy as np
import pytest

from polypseg.evaluation.metrics import METRIC_NAMES, confusion, image_metrics, metrics_from_counts, summarise


def test_hand_computed_image() -> None:
    gt = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0], [1, 0, 0, 0]])
    c = confusion(pred, gt)
    assert c == {"tp": 2, "fp": 1, "fn": 2, "tn": 3}
    m = metrics_from_counts(c)
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["iou"] == pytest.approx(2 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(5 / 8)


def test_empty_rule() -> None:
    empty = np.zeros((4, 4), int)
    both_empty = image_metrics(empty, empty)
    assert all(both_empty[k] == 1.0 for k in METRIC_NAMES)
    fp_on_empty = image_metrics(np.eye(4, dtype=int), empty)
    assert fp_on_empty["dice"] == 0.0 and fp_on_empty["iou"] == 0.0
    assert fp_on_empty["precision"] == 0.0 and fp_on_empty["recall"] == 0.0
    assert fp_on_empty["specificity"] == pytest.approx(12 / 16)
    missed = image_metrics(empty, np.eye(4, dtype=int))
    assert missed["dice"] == 0.0 and missed["precision"] == 0.0 and missed["recall"] == 0.0
    full = np.ones((4, 4), int)
    all_fg = image_metrics(full, full)
    assert all_fg["specificity"] == 1.0 and all_fg["dice"] == 1.0


def test_mean_and_pooled_differ_as_hand_computed() -> None:
    # image A: large polyp perfectly found; image B: small polyp missed.
    gt_a = np.zeros((10, 10), int)
    gt_a[:5] = 1
    gt_b = np.zeros((10, 10), int)
    gt_b[0, 0] = 1
    rows = [image_metrics(gt_a, gt_a), image_metrics(np.zeros_like(gt_b), gt_b)]
    s = summarise(rows)
    assert s["mean"]["dice"] == pytest.approx(0.5)
    assert s["pooled"]["dice"] == pytest.approx(100 / 101)  # 2*50 / (2*50 + 0 + 1)
    assert s["n_images"] == 2


@pytest.mark.parametrize("seed", range(5))
def test_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.random((37, 53)) > rng.random()
    pred = rng.random((37, 53)) > rng.random()
    m = image_metrics(pred, gt)
    tp = np.sum(pred & gt)
    fp = np.sum(pred & ~gt)
    fn = np.sum(~pred & gt)
    tn = np.sum(~pred & ~gt)
    if tp + fp + fn > 0:
        assert m["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-9)
        assert m["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-9)
    assert m["accuracy"] == pytest.approx((tp + tn) / gt.size, abs=1e-9)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        confusion(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no images"):
        summarise([])
