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


def _image(rows: str) -> np.ndarray:
    """A 0/1 image from a picture: one string of 0s and 1s per row, rows separated by spaces."""
    return np.array([[int(c) for c in row] for row in rows.split()], np.uint8)


#: Hand-worked cases on 4x4 images from the README's "Empty ground truth rule" and the definitions in
#: polypseg.evaluation.metrics: (gt, pred, counts tp/fp/fn/tn, expected metrics). A 0/0 ratio is 1 when
#: the image has no error (fp + fn == 0) and 0 otherwise.
EMPTY_RULE_CASES = {
    # nothing to find, nothing predicted: every ratio is 0/0 or n/n on an error-free image
    "empty gt, empty pred": (
        "0000 0000 0000 0000",
        "0000 0000 0000 0000",
        (0, 0, 0, 16),
        {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "specificity": 1.0, "accuracy": 1.0},
    ),
    # dice 0/(0+1+0), iou 0/1, precision 0/1, recall 0/0 with an error -> 0, specificity 15/16, accuracy 15/16
    "empty gt, one false positive": (
        "0000 0000 0000 0000",
        "0000 0010 0000 0000",
        (0, 1, 0, 15),
        {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "specificity": 0.9375, "accuracy": 0.9375},
    ),
    # dice 0/2, iou 0/2, precision 0/0 with an error -> 0, recall 0/2, specificity 14/14, accuracy 14/16
    "polyp missed, nothing predicted": (
        "0000 0110 0000 0000",
        "0000 0000 0000 0000",
        (0, 0, 2, 14),
        {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "specificity": 1.0, "accuracy": 0.875},
    ),
    # all polyp, all found: specificity 0/0 on an error-free image -> 1
    "full gt, full pred": (
        "1111 1111 1111 1111",
        "1111 1111 1111 1111",
        (16, 0, 0, 0),
        {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "specificity": 1.0, "accuracy": 1.0},
    ),
    # all polyp, one pixel missed: dice 30/31, iou 15/16, precision 15/15, recall 15/16,
    # specificity 0/0 with an error -> 0, accuracy 15/16
    "full gt, one false negative": (
        "1111 1111 1111 1111",
        "1111 1111 1101 1111",
        (15, 0, 1, 0),
        {
            "dice": 0.967741935483871,
            "iou": 0.9375,
            "precision": 1.0,
            "recall": 0.9375,
            "specificity": 0.0,
            "accuracy": 0.9375,
        },
    ),
    # no zero denominator: dice 2*3/(2*3+1+2) = 6/9, iou 3/6, precision 3/4, recall 3/5,
    # specificity 10/11, accuracy 13/16
    "tp 3, fp 1, fn 2, tn 10": (
        "1100 1110 0000 0000",
        "1000 0110 0001 0000",
        (3, 1, 2, 10),
        {
            "dice": 0.6666666666666666,
            "iou": 0.5,
            "precision": 0.75,
            "recall": 0.6,
            "specificity": 0.9090909090909091,
            "accuracy": 0.8125,
        },
    ),
}


@pytest.mark.parametrize("case", EMPTY_RULE_CASES)
def test_empty_rule_and_small_cases_hand_computed(case: str) -> None:
    gt, pred, (tp, fp, fn, tn), expected = EMPTY_RULE_CASES[case]
    m = image_metrics(_image(pred), _image(gt))
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
    assert set(expected) == set(METRIC_NAMES)
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert metrics_from_counts({"tp": tp, "fp": fp, "fn": fn, "tn": tn}) == {k: m[k] for k in METRIC_NAMES}


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
def test_confusion_counts_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.random((37, 53)) > rng.random()
    pred = rng.random((37, 53)) > rng.random()
    c = confusion(pred.astype(np.uint8) * 255, gt)  # any non-zero value is foreground
    assert c == {
        "tp": int(np.sum(pred & gt)),
        "fp": int(np.sum(pred & ~gt)),
        "fn": int(np.sum(~pred & gt)),
        "tn": int(np.sum(~pred & ~gt)),
    }


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        confusion(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no images"):
        summarise([])
