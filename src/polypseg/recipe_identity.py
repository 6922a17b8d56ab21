"""Which recipe a run trained with: two recipes that differ only in labels, held-out images or fine-tuning's
start train the same thing, so a run frozen under one name can be named for the built-in recipe it is."""

from __future__ import annotations

from typing import Any

from polypseg.config import Recipe, builtin_recipes, load_recipe

#: Recipe fields that do not change what a run trains: its label, which images it holds out and how they
#: are grouped, where fine-tuning starts, and how many loader processes read the data.
NON_TRAINING_FIELDS = ("name", "description", "seed", "init_weights", "init_strict", "data.val_fraction",
                       "data.test_fraction", "data.fold", "data.group_regex", "data.group_csv",
                       "data.num_workers")  # fmt: skip


def training_settings(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a dict without :data:`NON_TRAINING_FIELDS`: two recipes with equal settings train the
    same model the same way (on a given split and seed)."""
    settings = recipe.model_dump(mode="json")
    for dotted in NON_TRAINING_FIELDS:
        *parents, leaf = dotted.split(".")
        section = settings
        for key in parents:
            section = section[key]
        section.pop(leaf, None)
    return settings


def builtin_recipe_for(recipe: Recipe) -> str | None:
    """The name of the built-in recipe whose :func:`training_settings` equal ``recipe``'s (a run frozen as
    ``strong`` with a budget candidate's changes is ``cpu-2h`` if those changes are ``cpu-2h``'s), the one
    named like ``recipe`` first; None when no built-in recipe trains the same thing."""
    wanted = training_settings(recipe)
    names = sorted(builtin_recipes(), key=lambda name: name != recipe.name)
    return next((name for name in names if training_settings(load_recipe(name)) == wanted), None)
