"""Segmentation losses, all computed from logits.

Every loss takes ``logits`` and ``target`` shaped ``(N, 1, H, W)``; ``target`` holds 0/1 floats. Each
returns a scalar tensor. Build them by name with :func:`build_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from polypseg.errors import InputError


def _check(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    return target.to(logits.dtype)


class DiceLoss(nn.Module):
    """Soft Dice loss: ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` with ``p = sigmoid``.

    Args:
        smooth: added to numerator and denominator (keeps the loss defined for empty masks).
        per_image: compute the ratio per image and average (``True``) or over the whole batch
            (``False``, the default, more stable when some images have no foreground).
    """

    def __init__(self, smooth: float = 1.0, per_image: bool = False) -> None:
        super().__init__()
        self.smooth = smooth
        self.per_image = per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        prob = torch.sigmoid(logits.float())
        target = target.float()
        dims = (1, 2, 3) if self.per_image else (0, 1, 2, 3)
        inter = (prob * target).sum(dims)
        denom = prob.sum(dims) + target.sum(dims)
        return (1 - (2 * inter + self.smooth) / (denom + self.smooth)).mean()


class BCELoss(nn.Module):
    """Binary cross-entropy from logits, optionally class-weighted.

    Args:
        pos_weight: weight of foreground pixels relative to background (``>1`` counters the small
            foreground fraction of polyp images). ``None`` means 1.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        if pos_weight is not None and pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {pos_weight}")
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw)


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * Dice``; ``pos_weight`` is passed to the BCE term."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, pos_weight: float | None = None) -> None:
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.bce = BCELoss(pos_weight)
        self.dice = DiceLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, target) + self.dice_weight * self.dice(logits, target)


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017): ``-alpha_t (1 - p_t)**gamma log(p_t)``, mean over pixels.

    Args:
        alpha: weight of the foreground class in [0, 1]; the background gets ``1 - alpha``.
            ``None`` disables class weighting.
        gamma: focusing parameter; 0 gives (alpha-weighted) BCE.
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target).float()
        logits = logits.float()
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return loss.mean()


class TverskyLoss(nn.Module):
    """Tversky loss (Salehi et al. 2017): ``1 - TP / (TP + alpha FP + beta FN)`` on soft counts.

    ``alpha = beta = 0.5`` gives the Dice loss; ``beta > alpha`` penalises missed polyp pixels more.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target).float()
        p = torch.sigmoid(logits.float())
        tp = (p * target).sum()
        fp = (p * (1 - target)).sum()
        fn = ((1 - p) * target).sum()
        return 1 - (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)


def boundary_weights(target: torch.Tensor, kernel: int = 31, strength: float = 5.0) -> torch.Tensor:
    """Pixel weights ``1 + strength * |avgpool(target) - target|``: large near object boundaries.

    ``target`` (N, 1, H, W) in {0, 1}; ``kernel`` is the odd side of the averaging window in pixels.
    The window mean (over the in-image part of the window, as ``count_include_pad=False``) is taken
    as a row pass then a column pass: equal to the square window, at 2k instead of k**2 reads a pixel.
    """
    pad = kernel // 2
    rows = F.avg_pool2d(target, (1, kernel), stride=1, padding=(0, pad), count_include_pad=False)
    local_mean = F.avg_pool2d(rows, (kernel, 1), stride=1, padding=(pad, 0), count_include_pad=False)
    return 1 + strength * (local_mean - target).abs()


class StructureLoss(nn.Module):
    """Boundary-weighted BCE + weighted IoU (the "structure loss" of F3Net / PraNet).

    The per-pixel weights :func:`boundary_weights` really are applied: the BCE is computed with
    ``reduction='none'``, multiplied by the weights and normalised per image. (The widely copied
    version passes ``reduce='none'``, which PyTorch reads as the legacy "reduce" flag, so it averages
    first and its weights cancel out.)
    """

    def __init__(self, kernel: int = 31, strength: float = 5.0) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {kernel}")
        self.kernel, self.strength = kernel, strength

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target).float()
        logits = logits.float()
        w = boundary_weights(target, self.kernel, self.strength)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        wbce = (w * bce).sum((2, 3)) / w.sum((2, 3))
        p = torch.sigmoid(logits)
        inter = (p * target * w).sum((2, 3))
        union = ((p + target) * w).sum((2, 3))
        wiou = 1 - (inter + 1) / (union - inter + 1)
        return (wbce + wiou).mean()


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "dice": DiceLoss,
    "bce": BCELoss,
    "bce_dice": BCEDiceLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "structure": StructureLoss,
}


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a loss by name. Raises ``KeyError`` listing valid names for an unknown one."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise TypeError(f"bad arguments for loss {name!r}: {exc}") from exc
