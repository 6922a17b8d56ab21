"""Recipes: the YAML schema of a training run, loading, overrides and validation.

A recipe names everything that decides a trained model: model, loss, optimiser, schedule,
augmentation, image size, batch size, epochs and seed. Unknown keys are errors (with the valid ones
listed), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import itertools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polypseg.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSpec(_Strict):
    """``name`` from the model registry; ``args`` its constructor arguments (base, depth, ...)."""

    name: str = "unet"
    args: dict[str, Any] = Field(default_factory=dict)


class LossSpec(_Strict):
    """``name`` from the loss registry; ``args`` its arguments (pos_weight, alpha, ...).

    ``deep_supervision_weights`` weigh the auxiliary outputs of a deep-supervised model.
    """

    name: str = "dice"
    args: dict[str, Any] = Field(default_factory=dict)
    deep_supervision_weights: list[float] = Field(default_factory=lambda: [0.5, 0.25, 0.125])


class OptimizerSpec(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class SchedulerSpec(_Strict):
    """``step``: multiply by ``gamma`` every ``step_size`` epochs; ``cosine`` / ``poly``: decay to
    ``min_lr_ratio * lr`` over the run after ``warmup_epochs`` of linear warm-up."""

    name: Literal["none", "step", "cosine", "poly"] = "none"
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0)
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    power: float = Field(0.9, gt=0)


class DataSpec(_Strict):
    """Training-time data settings. ``size`` is the square side (pixels) images are resized to."""

    size: int = Field(256, ge=32, le=2048)
    batch_size: int = Field(8, ge=1)
    augment: Literal["none", "flips", "seed", "strong"] = "seed"
    num_workers: int = Field(0, ge=0)
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    fold: str | None = None
    foreground_labels: list[int] | None = None
    group_regex: str | None = None
    group_csv: str | None = None

    @field_validator("fold")
    @classmethod
    def _fold(cls, v: str | None) -> str | None:
        from polypseg.data.split import parse_fold

        parse_fold(v)
        return v


class Recipe(_Strict):
    """A complete training recipe (see ``polypseg/recipes/*.yaml``)."""

    name: str = "custom"
    description: str = ""
    model: ModelSpec = Field(default_factory=ModelSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    epochs: int = Field(10, ge=1)
    seed: int = 0
    #: "auto": the fastest correct setting of the device (bf16 on CUDA and on CPUs with bf16 units,
    #: else 32; see polypseg.device); or "32", "bf16", "16" (Lightning's spellings are accepted).
    precision: Literal["auto", "32", "bf16", "16"] = "auto"
    channels_last: bool = False
    gradient_clip: float | None = Field(None, gt=0)
    threshold: float = Field(0.5, gt=0, lt=1)
    #: multi-scale training: each batch is resized by a factor drawn from this list (sizes kept
    #: divisible by stem_stride * 2**depth); empty disables it. The polyp literature uses [0.75, 1.0, 1.25].
    multiscale: list[float] = Field(default_factory=list)
    #: progressive resizing: training is split into equal shares (of the epochs, or of the wall-clock
    #: budget when one is set), the k-th at ``progressive[k] * data.size`` (kept divisible as above);
    #: increasing factors in [0.25, 1] ending with 1.0, e.g. [0.5, 0.75, 1.0]. Validation is always at
    #: full size. Empty disables it; it does not combine with ``multiscale``.
    progressive: list[float] = Field(default_factory=list)
    #: exponential moving average of the weights (e.g. 0.999); validated and saved weights are the EMA.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    #: fine-tuning: initialise the model from this local file before training (a polypseg checkpoint or a
    #: ``torch.save(model.state_dict())`` file of the same architecture); nothing is ever downloaded.
    init_weights: str | None = None
    #: with ``init_weights``: every model tensor must be in the file with its shape (True), or only the
    #: tensors whose name and shape match are copied and the rest keep their random initialisation (False).
    init_strict: bool = True

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_alias(cls, v: Any) -> Any:
        # YAML gives the integer 32; "bf16-mixed" and the other Lightning spellings mean the short names.
        from polypseg.device import parse_precision

        try:
            return parse_precision(v)
        except ValueError:
            return v  # the Literal check then reports it with the valid names

    @field_validator("multiscale")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        if any(not 0.25 <= f <= 4 for f in v):
            raise ValueError(f"multiscale factors must lie in [0.25, 4], got {v}")
        return v

    @field_validator("progressive")
    @classmethod
    def _progressive(cls, v: list[float]) -> list[float]:
        increasing = all(a < b for a, b in itertools.pairwise(v))
        if v and (any(not 0.25 <= f <= 1 for f in v) or not increasing or v[-1] != 1.0):
            raise ValueError(f"progressive factors must increase within [0.25, 1] and end with 1.0, got {v}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("recipe name must not be empty")
        return v

    @model_validator(mode="after")
    def _check_builders(self) -> Recipe:
        if self.progressive and self.multiscale:
            raise ValueError("progressive and multiscale do not combine: choose one (set the other to [])")
        from polypseg.losses import build_loss
        from polypseg.models import build_model

        depth = int(self.model.args.get("depth", 4))
        if self.model.args.get("deep_supervision"):
            heads = min(depth, 4) - 1  # auxiliary heads of polypseg.models.UNet (levels 1 .. 3)
            if heads < 1:
                raise ValueError(
                    f"model.args.deep_supervision needs depth >= 2 (depth {depth} has no coarser decoder level "
                    "to supervise); raise depth or turn deep supervision off"
                )
            if len(self.loss.deep_supervision_weights) < heads:
                raise ValueError(
                    f"loss.deep_supervision_weights has {len(self.loss.deep_supervision_weights)} weight(s) but a "
                    f"depth-{depth} model has {heads} auxiliary heads: give one weight per head (e.g. "
                    f"{[0.5 ** (i + 1) for i in range(heads)]}), or the heads without one stay untrained"
                )
        from polypseg.models import model_input_multiple, nearest_valid_size

        step = model_input_multiple(self.model.args)
        if self.data.size % step:
            raise ValueError(
                f"data.size {self.data.size} is not divisible by stem_stride * 2**depth = {step}; "
                f"use {nearest_valid_size(self.data.size, step)}"
            )
        try:
            build_model(self.model.name, **{**self.model.args, "base": 1})
            build_loss(self.loss.name, **self.loss.args)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(str(exc).strip('"')) from None
        return self


class RecipeError(InputError):
    """A recipe file or override that does not validate; the message says where and why."""


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in ``polypseg/recipes``."""
    folder = resources.files("polypseg") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _set_path(d: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    for i, k in enumerate(keys[:-1]):
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            where = ".".join(keys[: i + 1])
            raise RecipeError(
                f"recipe {source}: {where} is {d!r}, not a section of keys, so {dotted} cannot be set; "
                f"write it as a mapping, e.g. '{keys[i]}: {{{keys[i + 1]}: ...}}'"
            )
    d[keys[-1]] = value


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """``"did you mean 'epochs'?"`` (or the valid keys) for an unknown key at ``loc`` of a recipe."""
    model: type[BaseModel] | None = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model is not None else None
        kind = field.annotation if field is not None else None
        model = kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    if model is None:
        return "unknown key"
    valid = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"unknown key; {hint}"


def _error_line(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(recipe)"
    message = _unknown_key(tuple(err["loc"])) if err["type"] == "extra_forbidden" else err["msg"]
    return f"  {where}: {message}"


def load_recipe(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Load a built-in recipe by name or a YAML file by path, apply dotted overrides, validate.

    ``overrides`` maps dotted keys to values, e.g. ``{"epochs": 5, "data.size": 128}``. A recipe may start
    from another with ``extends: NAME_OR_PATH`` (a built-in name, or a YAML path relative to the file that
    names it): the parent's keys are merged section by section under the child's, and the parent's
    ``name`` and ``description`` are not inherited.

    Raises:
        RecipeError: unknown name, unreadable YAML, an ``extends`` cycle, or a validation failure (listing
            each field).
    """
    text_source = str(name_or_path)
    raw = _raw_recipe(name_or_path, ())
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(raw, key, value, text_source)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        lines = [_error_line(e) for e in exc.errors()]
        raise RecipeError(f"recipe {text_source} is not valid:\n" + "\n".join(lines)) from None


def _read_recipe_text(name_or_path: str | Path) -> tuple[str, str]:
    """(YAML text, where it came from: the resolved file path or ``builtin:NAME``) of a recipe."""
    text_source = str(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise RecipeError(f"recipe file {path} does not exist")
        try:
            return path.read_text(encoding="utf-8"), str(path.resolve())
        except UnicodeDecodeError:
            raise RecipeError(f"recipe file {path} is not a text (UTF-8) YAML file; give a recipe YAML") from None
    if text_source not in builtin_recipes():
        raise RecipeError(
            f"unknown recipe {text_source!r}: give a YAML file path or one of {', '.join(builtin_recipes())}"
        )
    return (resources.files("polypseg") / "recipes" / f"{text_source}.yaml").read_text(), f"builtin:{text_source}"


def _raw_recipe(name_or_path: str | Path, chain: tuple[str, ...]) -> dict[str, Any]:
    """The recipe's mapping with its ``extends`` parents merged in; ``chain``: the recipes that extend it."""
    text_source = str(name_or_path)
    text, origin = _read_recipe_text(name_or_path)
    if origin in chain:
        loop = " -> ".join((*chain, origin))
        raise RecipeError(f"recipe {text_source}: 'extends' goes round in a circle ({loop}); remove one of them")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {text_source}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RecipeError(
            f"recipe {text_source}: expected a mapping at the top level, found a {type(raw).__name__}; write it "
            "as 'key: value' lines (e.g. 'epochs: 10'), as the built-in recipes are (polypseg/recipes/*.yaml)"
        )
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise RecipeError(f"recipe {text_source}: extends must name one recipe (a built-in name or a YAML path)")
    if not origin.startswith("builtin:") and (parent.endswith((".yaml", ".yml")) or "/" in parent):
        parent = str(Path(origin).parent / parent)  # relative to the file that names it
    base = _raw_recipe(parent, (*chain, origin))
    base.pop("name", None)
    base.pop("description", None)
    return _merge(base, raw)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mapping by mapping (lists and values are replaced whole)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML, every field resolved (what a run folder's ``config.yaml`` holds)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
