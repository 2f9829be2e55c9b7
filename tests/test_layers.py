"""The library's dependencies point one way (docs/architecture.md): a module imports only from the
layers below its own; only the command-line tools sit above the workflow's helpers."""

import ast
from pathlib import Path

from tests.shared import REPO

# Bottom to top, as the table of docs/architecture.md; names in one tuple are one layer.
LAYERS = [
    ("errors", "io", "interp"),
    ("data",),
    ("queries", "prediction"),
    ("flow",),
    ("features",),
    ("model",),
    ("depth",),
    ("evaluation",),
    ("pipeline", "visualise", "plots"),
    ("workflow",),
    ("tools", "bench"),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit(module: str) -> str:
    """omnitrack.flow.store -> flow; omnitrack.pipeline -> pipeline."""
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    """The omnitrack modules ``path`` imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("omnitrack."):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "omnitrack":
            found.update(f"omnitrack.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("omnitrack."))
    return found


def test_every_library_module_has_a_layer():
    units = {
        p.stem if p.parent.name == "omnitrack" else p.parent.relative_to(REPO / "omnitrack").parts[0]
        for p in (REPO / "omnitrack").rglob("*.py")
    }
    assert units - {"__init__"} == set(RANK)


def test_imports_point_down():
    wrong = []
    for path in sorted((REPO / "omnitrack").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if path.name == "__init__.py" and path.parent.name == "omnitrack":
            continue
        own = unit(module)
        for target in sorted(imports(path)):
            other = unit(target)
            if other != own and RANK[other] > RANK[own]:
                wrong.append(f"{path.relative_to(REPO)} imports {target} ({other} is above {own})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from omnitrack.pipeline import evaluate\n    from omnitrack import workflow\n")
    assert imports(bad) == {"omnitrack.pipeline", "omnitrack.workflow"}
