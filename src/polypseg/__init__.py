"""polypseg: train, evaluate, explain and serve U-Net-family models for polyp segmentation."""

import os

# albumentations asks PyPI for a newer version on every import (a network call with a 2 s timeout);
# polypseg never reaches the network at run time, so switch that off unless the user chose otherwise.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
