"""U-Net (Ronneberger et al. 2015) for binary segmentation, with optional attention gates and deep supervision.

It returns logits shaped ``(N, out_channels, H, W)``; the sigmoid belongs to the loss or predictor.
"""

from __future__ import annotations

import torch
from torch import nn

from polypseg.models.blocks import DoubleConv, Down, UpBlock


def input_multiple(depth: int = 4, stem_stride: int = 1) -> int:
    """The number that a U-Net's input height and width must be multiples of: ``stem_stride * 2**depth``."""
    return int(stem_stride) * 2 ** int(depth)


def model_input_multiple(model_args: dict) -> int:
    """:func:`input_multiple` of a recipe's ``model.args`` (defaults: depth 4, stem stride 1)."""
    return input_multiple(model_args.get("depth", 4), model_args.get("stem_stride", 1))


def nearest_valid_size(size: int, step: int) -> int:
    """The multiple of ``step`` (see :func:`input_multiple`) nearest to ``size`` (ties go up), at least ``step``."""
    lower = max(step, (size // step) * step)
    upper = lower + step
    return lower if size - lower < upper - size else upper


class UNet(nn.Module):
    """Encoder-decoder with skip connections.

    Args:
        in_channels: channels of the input image (3 for RGB).
        out_channels: channels of the logit map (1 for binary segmentation).
        base: channels of the first level; level ``i`` has ``base * 2**i`` channels (64 in the paper).
        depth: number of 2x down-sampling steps (4 in the paper). Inputs must have H and W divisible
            by ``2**depth``.
        bilinear: bilinear up-sampling + 1x1 conv instead of 2x2 transposed convolutions.
        dropout: channel dropout after the convolutions of the two deepest levels (0 disables).
        attention: additive attention gates on the skip connections (Attention U-Net).
        deep_supervision: with ``True``, ``forward`` in training mode returns a list
            ``[main, aux_1, ...]`` of logits, the auxiliary ones from coarser decoder levels, each
            upsampled to the input size. In eval mode only the main logits are returned.
        stem_stride: 2 makes the first convolution stride 2, as MONAI's ``UNet`` does: every level then
            works at half the resolution (about a quarter of the FLOPs at the same widths) and the logits
            are upsampled bilinearly to the input size. 1 (default) is the original U-Net.

    Shapes: ``(N, in_channels, H, W)`` float -> ``(N, out_channels, H, W)`` logits.

    Raises:
        ValueError: for non-positive sizes, or (in ``forward``) an input size that
            :func:`input_multiple` does not divide; the message names the nearest valid size.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        base: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        dropout: float = 0.0,
        attention: bool = False,
        deep_supervision: bool = False,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("base", base)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(depth, int) or not 1 <= depth <= 6:
            raise ValueError(f"depth must be an integer from 1 to 6, got {depth!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        self.depth, self.stem_stride = depth, stem_stride
        self.deep_supervision = deep_supervision
        widths = [base * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_channels, widths[0], stride=stem_stride)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], dropout if i >= depth - 2 else 0.0) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i], bilinear, attention) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        # Auxiliary heads on the decoder outputs of the coarser levels (deepest first is skipped).
        self.aux_heads = (
            nn.ModuleList(nn.Conv2d(widths[i], out_channels, 1) for i in range(1, min(depth, 4)))
            if deep_supervision
            else None
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is (N, C, H, W) with H and W multiples of :func:`input_multiple`."""
        if x.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        step = input_multiple(self.depth, self.stem_stride)
        h, w = x.shape[-2:]
        if h % step or w % step:
            raise ValueError(
                f"input size {h}x{w} is not divisible by stem_stride * 2**depth = {step}; "
                f"the nearest valid size is {nearest_valid_size(h, step)}x"
                f"{nearest_valid_size(w, step)} (or change depth)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        decoded: list[torch.Tensor] = []
        for up in self.ups:
            y = up(y, skips.pop())
            decoded.append(y)
        main = self.head(y)
        if self.stem_stride != 1:
            main = nn.functional.interpolate(main, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if not (self.training and self.aux_heads is not None):
            return main
        outputs = [main]
        # decoded[-1] is the finest level (already used by `head`); aux heads take levels 1, 2, 3.
        for level, head in enumerate(self.aux_heads, start=1):
            feat = decoded[-1 - level]
            aux = head(feat)
            outputs.append(nn.functional.interpolate(aux, size=x.shape[-2:], mode="bilinear"))
        return outputs
