"""Residual-encoder U-Net (``resunet``): the U-Net's decoder over an encoder of residual blocks, with
strided convolutions for down-sampling, in the manner of nnU-Net's ResEnc presets (Isensee et al.,
"nnU-Net Revisited", MICCAI 2024: residual encoder stages with more blocks in the deeper stages)."""

from __future__ import annotations

import torch
from torch import nn

from polypseg.models.unet import UNet


class ResidualBlock(nn.Module):
    """3x3 conv (stride ``stride``) - BN - ReLU - 3x3 conv - BN, plus the input (a strided 1x1 conv + BN
    when width or size change), then ReLU (He et al. 2016): ``(N, in_ch, H, W) -> (N, out_ch, H/s, W/s)``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.skip: nn.Module = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResidualStage(nn.Sequential):
    """``blocks`` residual blocks, the first with stride ``stride``; optional channel dropout after them."""

    def __init__(self, in_ch: int, out_ch: int, blocks: int, stride: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [ResidualBlock(in_ch, out_ch, stride)]
        layers += [ResidualBlock(out_ch, out_ch) for _ in range(blocks - 1)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


def default_blocks(depth: int) -> tuple[int, ...]:
    """Blocks per encoder stage, shallow to deep, as nnU-Net's ResEnc presets grow them: 1, 3, 4, 6, 6, ..."""
    return tuple((1, 3, 4, 6)[i] if i < 4 else 6 for i in range(depth + 1))


class ResUNet(UNet):
    """U-Net whose encoder stages are residual (:class:`ResidualStage`) and down-sample by a stride-2
    convolution instead of max-pooling; decoder, heads, deep supervision and input checks are the U-Net's.

    Args:
        blocks: residual blocks per encoder stage, ``depth + 1`` positive integers (stem stage first);
            default :func:`default_blocks`. Other arguments as :class:`UNet`.

    Shapes: ``(N, in_channels, H, W)`` float -> ``(N, out_channels, H, W)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        base: int = 32,
        depth: int = 4,
        bilinear: bool = False,
        dropout: float = 0.0,
        attention: bool = False,
        deep_supervision: bool = False,
        stem_stride: int = 1,
        blocks: list[int] | tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, base, depth, bilinear, dropout, attention, deep_supervision, stem_stride
        )
        blocks = tuple(default_blocks(depth) if blocks is None else blocks)
        if len(blocks) != depth + 1 or not all(isinstance(b, int) and b >= 1 for b in blocks):
            raise ValueError(f"blocks must be {depth + 1} positive integers (one per stage, depth + 1), got {blocks}")
        self.blocks = blocks
        widths = [base * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            ResidualStage(widths[0], widths[0], blocks[0], stride=1),
        )
        self.downs = nn.ModuleList(
            ResidualStage(widths[i], widths[i + 1], blocks[i + 1], stride=2, dropout=dropout if i >= depth - 2 else 0.0)
            for i in range(depth)
        )
