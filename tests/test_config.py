from pathlib import Path

import pytest

from polypseg.config import RecipeError, builtin_recipes, dump_recipe, load_recipe
from polypseg.training.module import lr_factor


def test_builtin_recipes_load() -> None:
    assert {"seed", "quick"} <= set(builtin_recipes())
    for name in builtin_recipes():
        assert load_recipe(name).name == name


def test_seed_recipe_is_the_original_report() -> None:
    r = load_recipe("seed")
    assert r.model.name == "unet" and r.model.args["base"] == 64 and r.model.args["depth"] == 4
    assert r.data.size == 256 and r.epochs == 150
    assert r.optimizer.name == "adam" and r.optimizer.lr == pytest.approx(1e-3)
    assert r.loss.name == "dice"
    assert (r.scheduler.name, r.scheduler.step_size, r.scheduler.gamma) == ("step", 30, 0.1)
    assert r.data.augment == "seed"
    assert r.precision == "32"


def test_seed16_differs_from_seed_only_in_width_and_speed_settings() -> None:
    seed, seed16 = load_recipe("seed").model_dump(), load_recipe("seed16").model_dump()
    diff = {k for k in seed if seed[k] != seed16[k]}
    assert diff == {"name", "description", "model", "precision", "channels_last"}
    assert {**seed["model"]["args"], "base": 16} == seed16["model"]["args"]
    assert (seed16["precision"], seed16["channels_last"]) == ("auto", True)


def test_strong_is_seed16_with_the_structure_loss_and_deep_supervision() -> None:
    # What benchmarks/quality.py measured best under the CPU budget (docs/results.md).
    seed16, strong = load_recipe("seed16").model_dump(), load_recipe("strong").model_dump()
    assert {k for k in seed16 if seed16[k] != strong[k]} == {"name", "description", "model", "loss"}
    assert strong["model"]["args"] == {**seed16["model"]["args"], "deep_supervision": True}
    assert strong["loss"] == {**seed16["loss"], "name": "structure"}


def test_realtime_is_strong_with_a_strided_stem() -> None:
    # The real-time model of docs/performance.md; what benchmarks/budget.py measured is in its comment.
    strong, realtime = load_recipe("strong").model_dump(), load_recipe("realtime").model_dump()
    assert {k for k in strong if strong[k] != realtime[k]} == {"name", "description", "model"}
    assert realtime["model"] == {**strong["model"], "args": {**strong["model"]["args"], "stem_stride": 2}}
    assert realtime["data"]["size"] == 256


def test_overrides_and_roundtrip(tmp_path: Path) -> None:
    r = load_recipe("quick", {"epochs": 3, "data.size": 64, "seed": None})
    assert r.epochs == 3 and r.data.size == 64 and r.seed == 0
    path = tmp_path / "r.yaml"
    path.write_text(dump_recipe(r))
    assert load_recipe(path) == r


@pytest.mark.parametrize(
    ("given", "want"),
    [(32, "32"), ("32", "32"), ("bf16", "bf16"), ("bf16-mixed", "bf16"), (16, "16"), ("16-mixed", "16")],
)
def test_precision_accepts_yaml_integers_and_short_names(given: object, want: str) -> None:
    assert load_recipe("seed16", {"precision": given}).precision == want


def test_unknown_precision_is_explained() -> None:
    with pytest.raises(RecipeError, match="precision"):
        load_recipe("seed16", {"precision": 64})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochs: 3\nepohcs: 4\n", "epohcs"),
        ("model: {name: vnet}\n", "unknown model"),
        ("loss: {name: dice, args: {gamma: 2}}\n", "loss 'dice'"),
        ("data: {size: 100}\n", "use 96"),
        ("optimizer: {name: adam, lr: -1}\n", "optimizer.lr"),
        ("- a\n- b\n", "mapping"),
        ("epochs: [\n", "invalid YAML"),
    ],
)
def test_bad_recipes_are_explained(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=match):
        load_recipe(path)


def test_unknown_recipe_name_lists_builtins() -> None:
    with pytest.raises(RecipeError, match="quick"):
        load_recipe("nonexistent")


def test_schedules() -> None:
    step = load_recipe("seed")
    assert lr_factor(step, 0, 10) == 1.0
    assert lr_factor(step, 29 * 10 + 9, 10) == 1.0
    assert lr_factor(step, 30 * 10, 10) == pytest.approx(0.1)
    assert lr_factor(step, 60 * 10, 10) == pytest.approx(0.01)
    cos = load_recipe("quick", {"scheduler.warmup_epochs": 2, "scheduler.min_lr_ratio": 0.0, "epochs": 12})
    assert lr_factor(cos, 10, 10) == pytest.approx(0.5)  # halfway through warm-up
    assert lr_factor(cos, 20, 10) == pytest.approx(1.0)  # warm-up done
    assert lr_factor(cos, 70, 10) == pytest.approx(0.5)  # cosine midpoint (epoch 7 of 2..12)
    assert lr_factor(cos, 120, 10) == pytest.approx(0.0, abs=1e-9)


def test_a_recipe_file_can_extend_a_builtin_and_changes_only_what_it_names(tmp_path: Path) -> None:
    child = tmp_path / "faster.yaml"
    child.write_text("extends: strong\nname: faster\noptimizer: {lr: 0.003}\nmodel:\n  args: {base: 24}\n")
    got, want = load_recipe(child).model_dump(), load_recipe("strong").model_dump()
    assert got["name"] == "faster" and got["description"] == ""  # neither is inherited
    assert got["optimizer"] == {**want["optimizer"], "lr": 0.003}  # the section is merged, not replaced
    assert got["model"]["args"] == {**want["model"]["args"], "base": 24}
    assert {k for k in want if got[k] != want[k]} == {"name", "description", "optimizer", "model"}


def test_extends_chains_resolve_relative_paths_and_overrides_apply_last(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "parent.yaml").write_text("extends: seed\nepochs: 7\ndata: {size: 128}\n")
    (tmp_path / "child.yaml").write_text("extends: sub/parent.yaml\nname: child\ndata: {batch_size: 4}\n")
    r = load_recipe(tmp_path / "child.yaml", {"epochs": 3})
    assert (r.epochs, r.data.size, r.data.batch_size, r.model.args["base"]) == (3, 128, 4, 64)


def test_an_extends_cycle_and_an_unknown_parent_are_refused_with_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(RecipeError, match=r"circle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: stronk\n")
    with pytest.raises(RecipeError, match="unknown recipe 'stronk'"):
        load_recipe(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: [strong, seed]\n")
    with pytest.raises(RecipeError, match="extends must name one recipe"):
        load_recipe(tmp_path / "d.yaml")


def test_builtin_recipes_are_written_as_changes_to_the_one_they_extend() -> None:
    # each rule has one home: a builtin that only changes another names it instead of repeating it
    from importlib import resources

    import yaml

    folder = resources.files("polypseg") / "recipes"
    parents = {n: yaml.safe_load((folder / f"{n}.yaml").read_text()).get("extends") for n in builtin_recipes()}
    assert (parents["seed16"], parents["strong"], parents["realtime"]) == ("seed", "seed16", "strong")


def test_cpu_20min_is_the_realtime_recipe_under_its_budgets_name() -> None:
    realtime, cpu20 = load_recipe("realtime").model_dump(), load_recipe("cpu-20min").model_dump()
    assert {k for k in realtime if realtime[k] != cpu20[k]} == {"name", "description"}
