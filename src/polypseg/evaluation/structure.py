"""Structure metrics of the polyp / salient-object literature, computed with pysodmetrics.

pysodmetrics reproduces the MATLAB evaluation toolbox used by PraNet and its successors. Inputs per
image: a probability map in [0, 1] and a binary ground truth, both ``(H, W)`` at the original
resolution. Each map is turned into ``uint8`` 0..255 (``round(p * 255)``) as the toolbox reads PNGs;
the toolbox then min-max normalises each map itself.

Reported (mean over images, as the toolbox does):

- ``s_measure``: structure measure (Fan et al. 2017), alpha = 0.5;
- ``weighted_f``: weighted F-measure (Margolin et al. 2014), beta^2 = 1;
- ``mean_e_measure`` / ``max_e_measure``: enhanced-alignment measure (Fan et al. 2018), mean / max of
  the curve over 256 thresholds;
- ``mae``: mean absolute error between map and ground truth;
- ``toolbox_mean_dice`` / ``toolbox_max_dice`` (and IoU): the PraNet-toolbox protocol: each map
  min-max normalised, binarised at 256 thresholds, Dice averaged over images per threshold, then the
  mean and the max over thresholds. These are *not* the thresholded Dice of :mod:`polypseg.evaluation.metrics`.
"""

from __future__ import annotations

import numpy as np
import py_sod_metrics as sod

STRUCTURE_NAMES = (
    "s_measure",
    "weighted_f",
    "mean_e_measure",
    "max_e_measure",
    "mae",
    "toolbox_mean_dice",
    "toolbox_max_dice",
    "toolbox_mean_iou",
    "toolbox_max_iou",
)


def to_uint8_map(prob: np.ndarray) -> np.ndarray:
    """Probability map in [0, 1] -> uint8 0..255 (rounded), as saved to PNG for the toolbox."""
    return np.clip(np.rint(np.asarray(prob, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


class StructureMetrics:
    """Accumulates pysodmetrics' measures image by image.

    ``step`` returns the image's own values (S-measure, weighted F, mean E-measure, MAE); ``results``
    returns the data-set values with the toolbox's reductions.
    """

    def __init__(self) -> None:
        self.sm = sod.Smeasure(alpha=0.5)
        self.wfm = sod.WeightedFmeasure()
        self.em = sod.Emeasure()
        self.mae = sod.MAE()
        self.fm = sod.FmeasureV2(
            metric_handlers={
                "dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
                "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False),
            }
        )

    def step(self, prob: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Add one image: ``prob`` float (H, W) in [0, 1], ``gt`` (H, W) in {0, 1}."""
        if prob.shape != gt.shape:
            raise ValueError(f"probability map {prob.shape} and ground truth {gt.shape} differ in shape")
        p = to_uint8_map(prob)
        g = (np.asarray(gt) > 0).astype(np.uint8) * 255
        for metric in (self.sm, self.wfm, self.em, self.mae, self.fm):
            metric.step(p, g)
        return {
            "s_measure": float(self.sm.sms[-1]),
            "weighted_f": float(self.wfm.weighted_fms[-1]),
            "mean_e_measure": float(np.mean(self.em.changeable_ems[-1])),
            "mae": float(self.mae.maes[-1]),
        }

    def results(self) -> dict[str, float]:
        """Data-set values (see the module docstring)."""
        em_curve = self.em.get_results()["em"]["curve"]
        fm = self.fm.get_results()
        return {
            "s_measure": float(self.sm.get_results()["sm"]),
            "weighted_f": float(self.wfm.get_results()["wfm"]),
            "mean_e_measure": float(np.mean(em_curve)),
            "max_e_measure": float(np.max(em_curve)),
            "mae": float(self.mae.get_results()["mae"]),
            "toolbox_mean_dice": float(np.mean(fm["dice"]["dynamic"])),
            "toolbox_max_dice": float(np.max(fm["dice"]["dynamic"])),
            "toolbox_mean_iou": float(np.mean(fm["iou"]["dynamic"])),
            "toolbox_max_iou": float(np.max(fm["iou"]["dynamic"])),
        }
