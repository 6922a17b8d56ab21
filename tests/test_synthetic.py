import numpy as np
import pytest

from polypseg.data.sources import discover
from polypseg.data.synthetic import render_frame, write_synthetic


def test_deterministic_and_seed_dependent() -> None:
    a_img, a_mask = render_frame(0, 3, 64)
    b_img, b_mask = render_frame(0, 3, 64)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    c_img, _ = render_frame(1, 3, 64)
    assert not np.array_equal(a_img, c_img)


def test_frames_and_masks_are_well_formed() -> None:
    counts = []
    for i in range(40):
        image, mask = render_frame(0, i, 96)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 1}
        counts.append(int(mask.sum()))
    assert any(c == 0 for c in counts), "some frames must have no polyp"
    assert sum(c > 0 for c in counts) > 25, "most frames have polyps"


def _best_threshold_dice(values: np.ndarray, gt: np.ndarray) -> float:
    best = 0.0
    for t in np.quantile(values, np.linspace(0.02, 0.98, 49)):
        for pred in (values > t, values <= t):
            tp = np.sum(pred & gt)
            best = max(best, 2 * tp / (pred.sum() + gt.sum()))
    return best


def test_not_solvable_by_a_colour_threshold() -> None:
    frames = [render_frame(0, i, 96) for i in range(30)]
    images = np.stack([f[0] for f in frames]).astype(np.float32)
    gt = np.stack([f[1] for f in frames]).astype(bool)
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    channels = {
        "r": r,
        "g": g,
        "b": b,
        "luma": 0.299 * r + 0.587 * g + 0.114 * b,
        "r/g": r / (g + 1),
        "b/g": b / (g + 1),
        "saturation": images.max(-1) - images.min(-1),
    }
    for name, values in channels.items():
        assert _best_threshold_dice(values, gt) < 0.5, name


def test_write_synthetic_layout(tmp_path) -> None:
    root = write_synthetic(tmp_path / "syn", n=20, size=32, seed=0)
    samples = discover(root)
    assert len(samples) == 20
    splits = [s.split for s in samples]
    assert splits.count("train") == 15 and splits.count("val") == 2 and splits.count("test") == 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        render_frame(0, 0, 16)
    with pytest.raises(ValueError, match="n >= 10"):
        write_synthetic("/nonexistent/x", n=3)
