"""The house's layering rule (DESIGN.md): an import only points down the list of layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pixforge"

# Top to bottom; a module may import its own layer and those below it, never one above. The package's
# __init__ is the face (``pixforge.load``, ``pixforge.train``) and sits on top with the CLI.
LAYERS: list[set[str]] = [
    {"cli", "__main__", "__init__"},
    {"studio", "serve", "client"},
    {"reproduce"},
    {"evaluation", "export", "editing", "interop"},
    {"api"},
    {"train", "checkpoint", "pages", "visual"},
    {"methods"},
    {"nets", "losses", "data", "metrics"},
    {"config", "devices", "distributed", "errors"},
]


def layer_of(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def imported_modules(path: Path) -> set[str]:
    """The ``pixforge.X`` top-level names a file imports (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pixforge."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "pixforge":
            names.update(a.name for a in node.names if is_module(a.name))
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("pixforge."))
    return names


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path):
    rel = path.relative_to(PACKAGE)
    own = layer_of(rel.parts[0].removesuffix(".py"))
    upward = {name for name in imported_modules(path) if layer_of(name) < own}
    assert not upward, f"{rel} imports {sorted(upward)} from a layer above it"


def test_metrics_import_nothing_above_data():
    allowed = {"metrics", "data", "nets", "config", "devices", "errors"}
    for path in (PACKAGE / "metrics").rglob("*.py"):
        assert imported_modules(path) <= allowed, path
