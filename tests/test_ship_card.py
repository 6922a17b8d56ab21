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
