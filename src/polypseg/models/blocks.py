"""Building blocks shared by the U-Net family.

All blocks take and return float tensors shaped ``(N, C, H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU (Ronneberger et al. 2015).

    Padding keeps the spatial size: ``(N, in_ch, H, W) -> (N, out_ch, H, W)``; ``stride`` 2 on the first
    convolution halves it: ``(N, out_ch, H/2, W/2)``.
    """

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0, stride: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Down(nn.Module):
    """2x2 max-pool then :class:`DoubleConv`: ``(N, in_ch, H, W) -> (N, out_ch, H/2, W/2)``."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_ch, out_ch, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class Upsample(nn.Module):
    """Doubles the spatial size: ``(N, in_ch, H, W) -> (N, out_ch, 2H, 2W)``.

    ``bilinear=True`` uses bilinear interpolation followed by a 1x1 convolution (cheaper, no
    checkerboard artefacts); ``bilinear=False`` uses a learned 2x2 transposed convolution as in the
    original U-Net.
    """

    def __init__(self, in_ch: int, out_ch: int, bilinear: bool) -> None:
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.proj = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        else:
            self.proj = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.proj(x)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, "Attention U-Net").

    ``skip`` (N, skip_ch, H, W) is re-weighted by a coefficient in [0, 1] computed from ``skip`` and the
    gating signal ``gate`` (N, gate_ch, H, W) coming from the coarser decoder level (already upsampled to
    the same H, W). Returns a tensor shaped like ``skip``.
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(skip_ch, inter_ch, 1, bias=False)
        self.phi = nn.Conv2d(gate_ch, inter_ch, 1, bias=True)
        self.psi = nn.Sequential(nn.Conv2d(inter_ch, 1, 1, bias=True), nn.BatchNorm2d(1), nn.Sigmoid())
        self.last_attention: torch.Tensor | None = None

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        alpha = self.psi(F.relu(self.theta(skip) + self.phi(gate), inplace=True))
        self.last_attention = alpha.detach()
        return skip * alpha


class UpBlock(nn.Module):
    """Decoder stage: upsample, (optionally gate the skip), concatenate, :class:`DoubleConv`.

    ``x`` (N, in_ch, H, W) and ``skip`` (N, skip_ch, 2H, 2W) give ``(N, out_ch, 2H, 2W)``.
    """

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        bilinear: bool,
        attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.up = Upsample(in_ch, out_ch, bilinear)
        self.gate = AttentionGate(skip_ch, out_ch, max(skip_ch // 2, 1)) if attention else None
        self.conv = DoubleConv(out_ch + skip_ch, out_ch, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([skip, x], dim=1))
