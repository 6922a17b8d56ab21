"""Attention U-Net (Oktay et al. 2018): the U-Net with additive attention gates on its skip connections."""

from __future__ import annotations

from polypseg.models.unet import UNet


class AttentionUNet(UNet):
    """U-Net with additive attention gates on every skip connection (Oktay et al. 2018).

    Takes the same arguments as :class:`UNet` (``attention`` is always on).
    """

    def __init__(self, **kwargs: object) -> None:
        kwargs.pop("attention", None)
        super().__init__(attention=True, **kwargs)  # type: ignore[arg-type]
