"""The shipped model's card (benchmarks/ship_model.py): the summary line and the markdown card are made from
the card's data, never typed in, and a card with flip-TTA figures shows both thresholds and both tables."""

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
ship_model = pytest.importorskip("ship_model")
ZOO = Path(__file__).resolve().parents[1] / "src" / "polypseg" / "zoo"


def _shipped() -> dict:
    return json.loads((ZOO / "polyp-unet16.json").read_text())


def test_the_summary_line_comes_from_the_architecture() -> None:
    card = _shipped()
    model = {"name": card["architecture"]["model"], "args": card["architecture"]["args"]}
    assert ship_model.describe(model, card["architecture"]["parameters"]) == card["summary"]
    strided = {"name": "unet", "args": {"base": 24, "depth": 4, "stem_stride": 2}}
    expected = "U-Net (base 24, depth 4, stride-2 stem, 4.4 M parameters) for binary polyp segmentation"
    assert ship_model.describe(strided, 4_370_000).startswith(expected)


def test_the_markdown_card_is_the_shipped_one_for_the_shipped_data() -> None:
    assert ship_model.markdown(_shipped()) == (ZOO / "polyp-unet16.md").read_text()


def test_a_card_with_tta_figures_shows_both_thresholds_and_both_tables() -> None:
    card = _shipped()
    card["threshold_tta"] = {"value": 0.425, "source": "tuned on PolypGen val, flip TTA (use with --tta)"}
    card["figures_tta"] = copy.deepcopy(card["figures"])
    card["figures_tta"]["external"]["Kvasir-SEG"]["mdice"] = 0.8421
    text = ship_model.markdown(card)
    assert "- flip-TTA threshold 0.425: tuned on PolypGen val, flip TTA (use with --tta)" in text
    assert "With flip TTA (`--tta`; threshold 0.425" in text
    assert text.count("| Kvasir-SEG | 900 |") == 2 and "| Kvasir-SEG | 900 | 0.842 [" in text
    assert text.index("With flip TTA") < text.index("## Known limits")


def _summary(n: int, dice: float) -> dict:
    structure = {"weighted_f": 0.5, "s_measure": 0.6, "mean_e_measure": 0.7, "mae": 0.05}
    return {"metrics": {"n_images": n, "mean": {"dice": dice, "iou": dice - 0.1}}, "ci95": {"dice": [0, 1]},
            "structure": structure}  # fmt: skip


def test_figures_mean_over_sets_and_image_weighted() -> None:
    external = {"A": ship_model.scores(_summary(900, 0.8)), "B": ship_model.scores(_summary(100, 0.7))}
    f = ship_model.figures(_summary(140, 0.65), external)
    assert f["validation_mdice"] == 0.65 and f["validation"]["images"] == 140
    assert f["external_mean_mdice"] == pytest.approx(0.75)  # (0.8 + 0.7) / 2
    assert f["external_image_weighted_mdice"] == pytest.approx(0.79)  # (900 * 0.8 + 100 * 0.7) / 1000


def test_the_card_names_the_built_in_recipe_that_trained_the_model() -> None:
    """The shipped model came from a budget candidate (``strong`` plus changes, frozen under the name
    ``strong``); its card must name the built-in recipe that trains the same thing (``cpu-2h``), not the base."""
    from polypseg.config import Recipe, load_recipe
    from polypseg.recipe_identity import builtin_recipe_for, training_settings

    card = _shipped()
    frozen = Recipe.model_validate(card["polypseg"]["recipe"])
    assert builtin_recipe_for(frozen) == card["recipe"]["name"]
    assert training_settings(load_recipe(card["recipe"]["name"])) == training_settings(frozen)
    assert training_settings(load_recipe("strong")) != training_settings(frozen)  # the stride-2 stem, the cosine


def test_a_recipe_with_changes_of_its_own_matches_no_built_in_one() -> None:
    from polypseg.config import load_recipe
    from polypseg.recipe_identity import builtin_recipe_for

    assert builtin_recipe_for(load_recipe("strong", {"seed": 3, "data.val_fraction": 0.2})) == "strong"
    assert builtin_recipe_for(load_recipe("strong", {"model.args.base": 24})) is None


def test_the_card_takes_the_training_precision_and_cpu_from_the_run_not_from_the_shipping_machine() -> None:
    from polypseg.training.env import training_cpu, training_precision

    """A run paused and resumed records its precision and CPU per session (``resumes``); a session killed by
    the pause has no end-of-run fields. The card reads every session."""
    env = {"cpu": "AMD EPYC, 2 cores (AVX512-BF16)", "precision_resolved": "bf16",
           "resumes": [{"cpu": "AMD EPYC, 2 cores (AVX512-BF16)", "precision": "bf16-mixed"}]}  # fmt: skip
    assert training_precision(env) == "bf16-mixed"
    assert training_cpu(env) == "AMD EPYC, 2 cores (AVX512-BF16)"
    two = {"cpu": "Intel Xeon, 2 cores (AMX bf16)", "precision": "bf16-mixed",
           "resumes": [{"cpu": "AMD EPYC, 2 cores (no bf16 units)", "precision": "32-true"}]}  # fmt: skip
    assert training_precision(two) == "bf16-mixed, then 32-true"
    assert training_cpu(two) == "Intel Xeon, 2 cores (AMX bf16), then AMD EPYC, 2 cores (no bf16 units)"


def test_the_shipped_card_states_a_precision() -> None:
    assert _shipped()["recipe"]["precision"] in ("bf16-mixed", "32-true", "16-mixed")


def test_the_card_embedded_in_the_weights_is_the_json_card() -> None:
    """A loose ``.safetensors`` file describes itself: its metadata holds the same card as the JSON."""
    from safetensors import safe_open

    with safe_open(str(ZOO / "polyp-unet16.safetensors"), "pt") as weights:
        assert json.loads(weights.metadata()["polypseg_card"]) == _shipped()


def test_the_weights_digest_follows_the_tensors_not_the_metadata(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from polypseg.zoo import weights_digest

    tensors = {"a.weight": torch.arange(6, dtype=torch.float16).reshape(2, 3), "n": torch.tensor(3)}
    save_file(tensors, str(tmp_path / "one.safetensors"), metadata={"polypseg_card": "{}"})
    save_file(tensors, str(tmp_path / "two.safetensors"), metadata={"polypseg_card": '{"name": "x"}'})
    changed = {**tensors, "a.weight": tensors["a.weight"].clone().index_fill_(1, torch.tensor([2]), 9.0)}
    save_file(changed, str(tmp_path / "three.safetensors"))
    one, two, three = (weights_digest(tmp_path / f"{n}.safetensors") for n in ("one", "two", "three"))
    assert one == two != three
    assert (tmp_path / "one.safetensors").read_bytes() != (tmp_path / "two.safetensors").read_bytes()
