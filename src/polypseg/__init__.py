"""polypseg: train, evaluate, explain and serve U-Net-family models for polyp segmentation."""

__version__ = "0.1.0"
