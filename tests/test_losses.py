import math

import pytest
import torch
from torch.nn import functional as F

from polypseg.errors import InputError
from polypseg.losses import StructureLoss, boundary_weights, build_loss

TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])


def test_dice_hand_computed() -> None:
    # p = 0.5 everywhere: inter = 1, sum p = 2, sum t = 2 -> dice = (2 + 1) / (4 + 1) = 0.6
    loss = build_loss("dice")(torch.zeros(1, 1, 2, 2), TARGET)
    assert loss.item() == pytest.approx(0.4)
    perfect = build_loss("dice")(torch.tensor([[[[20.0, 20.0], [-20.0, -20.0]]]]), TARGET)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)


def test_dice_empty_target_is_defined() -> None:
    loss = build_loss("dice")(torch.full((1, 1, 2, 2), -20.0), torch.zeros(1, 1, 2, 2))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_bce_and_pos_weight() -> None:
    assert build_loss("bce")(torch.zeros(1, 1, 2, 2), TARGET).item() == pytest.approx(math.log(2))
    ones = torch.ones(1, 1, 2, 2)
    weighted = build_loss("bce", pos_weight=3.0)(torch.zeros(1, 1, 2, 2), ones).item()
    assert weighted == pytest.approx(3 * math.log(2))
    # background pixels are not re-weighted
    bg = build_loss("bce", pos_weight=3.0)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item()
    assert bg == pytest.approx(math.log(2))


def test_bce_dice_is_weighted_sum() -> None:
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    combo = build_loss("bce_dice", bce_weight=0.3, dice_weight=0.7)(logits, target)
    expected = 0.3 * build_loss("bce")(logits, target) + 0.7 * build_loss("dice")(logits, target)
    assert combo.item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_hand_computed() -> None:
    # logit 0, target 1: ce = ln 2, (1 - p_t)^2 = 0.25, alpha = 0.25
    loss = build_loss("focal", alpha=0.25, gamma=2.0)(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert loss.item() == pytest.approx(0.25 * 0.25 * math.log(2))
    logits = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    target = (logits > 0.3).float()
    no_focus = build_loss("focal", alpha=None, gamma=0.0)(logits, target)
    assert no_focus.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-6)


def test_tversky_half_equals_dice() -> None:
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    target = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.6).float()
    tv = build_loss("tversky", alpha=0.5, beta=0.5, smooth=0.0)(logits, target)
    assert tv.item() == pytest.approx(build_loss("dice", smooth=0.0)(logits, target).item(), rel=1e-6)
    # beta > alpha punishes missed foreground more than false alarms
    miss = torch.full((1, 1, 2, 2), -5.0)
    assert build_loss("tversky", alpha=0.1, beta=0.9)(miss, TARGET) > build_loss("tversky", alpha=0.9, beta=0.1)(
        miss, TARGET
    )


def test_structure_loss_really_applies_pixel_weights() -> None:
    target = torch.zeros(1, 1, 96, 96)
    target[..., 32:64, 32:64] = 1
    w = boundary_weights(target)
    assert w.max() > 1.5 and w.min() == pytest.approx(1.0)
    # A prediction that is wrong only along the boundary ring.
    ring = (w > 1.5).float()
    logits = torch.where(target > 0, 4.0, -4.0) * (1 - 2 * ring)
    weighted = StructureLoss(strength=5.0)(logits, target)
    unweighted = StructureLoss(strength=0.0)(logits, target)
    assert weighted > unweighted + 0.1  # the boundary errors count more
    # With strength 0 the BCE part is the plain mean BCE (what the copied bug computes always).
    p = torch.sigmoid(logits)
    iou = 1 - ((p * target).sum() + 1) / ((p + target).sum() - (p * target).sum() + 1)
    plain = F.binary_cross_entropy_with_logits(logits, target) + iou
    assert unweighted.item() == pytest.approx(plain.item(), rel=1e-5)


def test_losses_decrease_towards_target() -> None:
    for name in ("dice", "bce", "bce_dice", "focal", "tversky", "structure"):
        fn = build_loss(name)
        good = fn(torch.tensor([[[[5.0, 5.0], [-5.0, -5.0]]]]), TARGET)
        bad = fn(torch.tensor([[[[-5.0, -5.0], [5.0, 5.0]]]]), TARGET)
        assert good < bad, name


def test_loss_errors() -> None:
    with pytest.raises(InputError, match="bce_dice"):
        build_loss("iou")
    with pytest.raises(TypeError, match="focal"):
        build_loss("focal", beta=1)
    with pytest.raises(ValueError, match="shape"):
        build_loss("dice")(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_boundary_weights_equal_the_square_window_mean() -> None:
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 40, 56, generator=g) > 0.6).float()  # objects touch every border
    for kernel in (1, 5, 31):
        ref = F.avg_pool2d(target, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
        assert torch.allclose(boundary_weights(target, kernel, 5.0), 1 + 5.0 * (ref - target).abs(), atol=1e-6)


def test_structure_loss_follows_a_target_edited_in_place() -> None:
    loss = StructureLoss()
    target = torch.zeros(1, 1, 64, 64)
    target[..., 10:30, 10:30] = 1
    logits = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    first = loss(logits, target)
    assert loss(logits, target) == first  # deep-supervision heads score the same target: same value
    target[..., 40:60, 40:60] = 1  # edited in place: the weights must be recomputed
    assert loss(logits, target) == StructureLoss()(logits, target.clone())
    assert loss(logits, target) != first
