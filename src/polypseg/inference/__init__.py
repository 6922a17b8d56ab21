"""Inference: a warm :class:`Predictor` (torch or ONNX Runtime), ``predict`` for files and videos, ONNX export.

Imports neither Lightning nor albumentations, so a deployed model needs only torch (or ONNX Runtime),
numpy and OpenCV (a test checks this in a fresh interpreter).
"""

from polypseg.inference.overlay import overlay
from polypseg.inference.predict import predict
from polypseg.inference.predictor import Predictor

__all__ = ["Predictor", "overlay", "predict"]
