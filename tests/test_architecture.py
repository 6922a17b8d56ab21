"""The package's layering cannot rot: stages import only earlier stages, no import circles, small modules,
and the inference stage loads neither Lightning nor albumentations (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "polypseg"

#: The flow of docs/architecture.md, earliest first. A module may import its own stage and earlier ones;
#: two stages of the same rank may not import each other.
STAGE_RANK: dict[str, float] = {
    "errors": -1,
    "__init__": 0,
    "atomic": 0,
    "runlock": 0,
    "paths": 0,
    "preprocess": 0,
    "device": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "config": 2,
    "recipe_identity": 2.2,
    "checkpoint": 2,
    "zoo": 2.5,
    "inference": 3,
    "evaluation": 4,
    "report": 5,
    "training": 5,
    "serve": 6,
    "cli": 7,
    "__main__": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def polypseg_imports(path: Path) -> set[str]:
    """Every ``polypseg...`` module that ``path`` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "polypseg"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "polypseg":
            found.add(node.module)
    return found


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_known_stage() -> None:
    unknown = sorted({stage_of(m) for m in MODULES} - set(STAGE_RANK))
    assert not unknown, f"add these to STAGE_RANK and docs/architecture.md: {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_stage_imports_a_later_or_sibling_stage(module: str) -> None:
    own = stage_of(module)
    bad = []
    for target in polypseg_imports(MODULES[module]):
        other = stage_of(target)
        if other != own and STAGE_RANK[other] >= STAGE_RANK[own]:
            bad.append(target)
    assert not bad, f"{module} (stage {own!r}) imports {sorted(bad)}, which come later in the flow"


def test_the_layering_check_catches_a_bad_import(tmp_path: Path) -> None:
    """The walker sees function-level imports too (a lazy import is still a dependency)."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from polypseg.training.fit import fit\n    import polypseg.inference\n")
    assert polypseg_imports(f) == {"polypseg.training.fit", "polypseg.inference"}


def _resolve(target: str) -> str | None:
    """The module of :data:`MODULES` an import names (``from polypseg.data import X`` is the package)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_no_import_circles() -> None:
    graph = {m: {t for t in map(_resolve, polypseg_imports(p)) if t and t != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its own modules is not a circle
    for m in graph:
        graph[m] = {t for t in graph[m] if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(t) :], t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small_and_say_their_job(module: str) -> None:
    path = MODULES[module]
    lines = path.read_text().count("\n")
    assert lines <= 320, f"{path} has {lines} lines: split it (one job per module)"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and doc.strip(), f"{path} has no module docstring saying its one job"


def test_inference_loads_neither_lightning_nor_albumentations() -> None:
    code = (
        "import sys, polypseg.inference, polypseg.inference.export, polypseg.checkpoint;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'albumentations', 'pytorch_lightning'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
