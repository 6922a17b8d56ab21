"""The LightningModule: model + loss + optimiser + schedule, validation Dice / IoU per image."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from polypseg.config import Recipe
from polypseg.data.datamodule import epoch_seed
from polypseg.errors import TrainingFailedError
from polypseg.evaluation.metrics import dice_iou
from polypseg.losses import build_loss
from polypseg.models import build_model, model_input_multiple
from polypseg.training.env import versions
from polypseg.training.schedule import lr_factor

CHECKPOINT_FORMAT = 1


def progressive_factor(factors: list[float], progress: float) -> float:
    """Progressive resizing: the factor of the share of training ``progress`` (in [0, 1]) falls in, with
    ``len(factors)`` equal shares; e.g. [0.5, 0.75, 1.0] at 0.4 -> 0.75."""
    return factors[min(int(progress * len(factors)), len(factors) - 1)]


def batch_dice_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Dice and IoU ``(N,)`` float64 of thresholded sigmoid(logits) vs target, both (N, 1, H, W).

    Counts are taken on the tensors' device; the ratios follow :func:`polypseg.evaluation.metrics.dice_iou`
    (the one zero-denominator rule: empty vs empty scores 1).
    """
    pred = torch.sigmoid(logits.float()) > threshold
    gt = target > 0.5
    counts = [(a & b).flatten(1).sum(1).cpu().numpy() for a, b in ((pred, gt), (pred, ~gt), (~pred, gt))]
    dice, iou = dice_iou(*counts)
    return torch.from_numpy(dice).to(logits.device), torch.from_numpy(iou).to(logits.device)


class SegModule(pl.LightningModule):
    """Trains ``build_model(recipe.model)`` with ``build_loss(recipe.loss)``.

    ``preprocess`` (size, mean, std) is stored in every checkpoint with the model's name and arguments,
    the recipe, the decision threshold and library versions, so inference needs nothing else.
    """

    def __init__(
        self, recipe: Recipe, preprocess: dict[str, Any], budget_fraction: Callable[[], float] | None = None
    ) -> None:
        super().__init__()
        #: spent share of the wall-clock budget (:class:`polypseg.training.budget.TrainingBudget`), for the
        #: budget-aware schedules; None without a budget
        self.budget_fraction = budget_fraction
        self.recipe = recipe
        self.preprocess = preprocess
        self.model: nn.Module = build_model(recipe.model.name, **recipe.model.args)
        if recipe.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(recipe.loss.name, **recipe.loss.args)
        self.threshold = recipe.threshold
        self._sums: dict[str, torch.Tensor] = {}
        self.epoch_record: dict[str, float] = {}
        self._phase_epoch, self._phase_factor = -1, 1.0  # progressive resizing: the epoch's factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _loss(self, out: torch.Tensor | list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return self.loss_fn(out, y)
        weights = [1.0, *self.recipe.loss.deep_supervision_weights][: len(out)]
        total = sum(w * self.loss_fn(o, y) for w, o in zip(weights, out, strict=False))
        return total / sum(weights)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.recipe.channels_last else x

    def _acc(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().double().sum()
        self._sums[key] = self._sums.get(key, torch.zeros((), dtype=torch.float64, device=v.device)) + v

    def on_train_epoch_start(self) -> None:
        self._sums = {}
        # Every random draw of an epoch (dropout, multi-scale factors) depends on (seed, epoch) alone, so a
        # resumed run repeats exactly what an uninterrupted one does (data order and augmentation are
        # seeded the same way by polypseg.data.datamodule.EpochSampler).
        torch.manual_seed(epoch_seed(self.recipe.seed, self.current_epoch, "module"))

    def training_progress(self) -> float:
        """Share of training done at the start of this epoch: the larger of the epoch share and the spent
        share of the wall-clock budget (as the budget-aware schedules count it), in [0, 1]."""
        done = self.current_epoch / max(self.recipe.epochs, 1)
        if self.budget_fraction is not None:
            done = max(done, self.budget_fraction())
        return min(max(done, 0.0), 1.0)

    def batch_factor(self) -> float:
        """The resize factor of this training batch: progressive resizing's phase (fixed within an epoch,
        :func:`progressive_factor`), or a factor drawn (torch RNG) from ``recipe.multiscale``, else 1."""
        if self.recipe.progressive:
            if self._phase_epoch != self.current_epoch:
                self._phase_epoch = self.current_epoch
                self._phase_factor = progressive_factor(self.recipe.progressive, self.training_progress())
            return self._phase_factor
        scales = self.recipe.multiscale
        return scales[int(torch.randint(len(scales), ()).item())] if scales else 1.0

    def rescale_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize a training batch by :meth:`batch_factor` (multi-scale or progressive resizing).

        Images are resized bilinearly, masks with nearest neighbour; the new side is the multiple of
        :func:`~polypseg.models.model_input_multiple` nearest to ``side * factor``.
        """
        factor = self.batch_factor()
        if factor == 1.0:
            return x, y
        step = model_input_multiple(self.recipe.model.args)
        h, w = x.shape[-2:]
        size = (max(step, round(h * factor / step) * step), max(step, round(w * factor / step) * step))
        if size == (h, w):
            return x, y
        x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        y = nn.functional.interpolate(y, size=size, mode="nearest")
        return x, y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = self.rescale_batch(*batch)
        loss = self._loss(self(self._prep(x)), y)
        if not torch.isfinite(loss):
            raise TrainingFailedError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx} (optimiser step "
                f"{self.global_step}): the run stopped; lower the learning rate (recipe optimizer.lr) or train in "
                "fp32 (--precision 32)"
            )
        self._acc("train_loss", loss * x.shape[0])
        self._acc("train_n", torch.tensor(x.shape[0]))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(self._prep(x))
        loss = self._loss(logits, y)
        dice, iou = batch_dice_iou(logits, y, self.threshold)
        self._acc("val_loss", loss * x.shape[0])
        self._acc("val_dice", dice)
        self._acc("val_iou", iou)
        self._acc("val_n", torch.tensor(x.shape[0]))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        keys = ["train_loss", "train_n", "val_loss", "val_dice", "val_iou", "val_n"]
        vec = torch.stack([self._sums.get(k, torch.zeros((), dtype=torch.float64)) for k in keys])
        vec = self.trainer.strategy.reduce(vec.to(self.device), reduce_op="sum")
        s = dict(zip(keys, vec.double().tolist(), strict=True))
        rec = {
            "epoch": float(self.current_epoch),
            "train_loss": s["train_loss"] / s["train_n"] if s["train_n"] else float("nan"),
            "val_loss": s["val_loss"] / max(s["val_n"], 1),
            "val_dice": s["val_dice"] / max(s["val_n"], 1),
            "val_iou": s["val_iou"] / max(s["val_n"], 1),
            "val_images": int(s["val_n"]),
            "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]),
        }
        if not self.recipe.multiscale:
            rec["train_scale"] = self._phase_factor if self.recipe.progressive else 1.0
        self.epoch_record = rec
        self.log("val_dice", rec["val_dice"], prog_bar=True, sync_dist=False)
        self.log("val_loss", rec["val_loss"], prog_bar=True, sync_dist=False)
        # the rest of the epoch's record, for the experiment loggers (--logger tensorboard / mlflow)
        self.log_dict({k: rec[k] for k in ("train_loss", "val_iou", "lr")}, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.recipe.optimizer
        params = self.model.parameters()
        if o.name == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        elif o.name == "adamw":
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(self.trainer.max_epochs, 1)))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda step: lr_factor(
                self.recipe, step, steps_per_epoch, self.budget_fraction() if self.budget_fraction else 0.0
            ),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["polypseg"] = {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.recipe.model.name,
            "model_args": dict(self.recipe.model.args),
            "preprocess": dict(self.preprocess),
            "threshold": float(self.threshold),
            "threshold_source": "recipe",
            "recipe": self.recipe.model_dump(mode="json"),
            "epoch": int(self.current_epoch),
            "val_dice": float(self.epoch_record.get("val_dice", float("nan"))),
            "versions": versions(),
        }
