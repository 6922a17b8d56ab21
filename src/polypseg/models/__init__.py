"""Models of the U-Net family: plain ``nn.Module``s that return logits, built by name from the registry."""

from polypseg.models.attention_unet import AttentionUNet
from polypseg.models.registry import MODELS, available_models, build_model
from polypseg.models.resunet import ResUNet
from polypseg.models.unet import UNet, input_multiple, model_input_multiple, nearest_valid_size

__all__ = [
    "MODELS",
    "AttentionUNet",
    "ResUNet",
    "UNet",
    "available_models",
    "build_model",
    "input_multiple",
    "model_input_multiple",
    "nearest_valid_size",
]
