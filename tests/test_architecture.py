"""The layering of architecture.md, kept true by reading the imports (ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each layer may import of ours; serving and flows never import each other.
ALLOWED = {
    "cdp": {"cdp"},
    "features": {"cdp", "features"},
    "models": {"cdp", "features", "models"},
    "flows": {"cdp", "features", "models", "flows"},
    "serving": {"cdp", "features", "models", "serving"},
}
OURS = set(ALLOWED)
# Heavy frameworks stay at their edge.
CONFINED = {"fastapi": ("serving",), "prefect": ("flows",), "mlflow": ("models/registry.py", "models/tracking.py")}
# The CLI is the composition root: it may import upward, inside its command functions.
COMPOSITION_ROOT = "cdp/cli.py"


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in module_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in module_level))
    return found


def python_files() -> list[Path]:
    return sorted(p for layer in OURS for p in (ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_dependencies_point_down(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    layer = relative.split("/")[0]
    for package, at_module_level in imports(path):
        if package in OURS and package not in ALLOWED[layer]:
            assert relative == COMPOSITION_ROOT and not at_module_level, f"{relative} imports {package}"
        if package in CONFINED:
            assert relative.startswith(CONFINED[package]), f"{package} is imported outside its edge: {relative}"


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import serving.app\nfrom fastapi import FastAPI\n\ndef f():\n    import models\n")
    assert imports(bad) == [("serving", True), ("fastapi", True), ("models", False)]


def test_pyproject_lists_every_package() -> None:
    """A non-editable install ships only the packages pyproject.toml names: a new subpackage left
    out of the list imports fine from a checkout and is missing from the wheel."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(setuptools["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for layer in OURS for init in (ROOT / layer).rglob("__init__.py")
    }
    # Folders of files only (the console's templates), shipped through their package-data.
    data = {name for name in set(setuptools["package-data"]) - on_disk if (ROOT / name.replace(".", "/")).is_dir()}
    assert on_disk - declared == set(), "add these to [tool.setuptools] packages"
    assert declared - on_disk - data == set(), "these listed packages do not exist"


def test_every_route_parses_json_strictly() -> None:
    """serving.body.StrictJSONRoute on every router: FastAPI's default parser takes NaN and Infinity."""
    from fastapi.routing import APIRoute

    from serving.app import create_app
    from serving.body import StrictJSONRoute

    # FastAPI keeps each included router, whose own routes answer.
    routers = [route.original_router for route in create_app().routes if hasattr(route, "original_router")]
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 50 and [r.path for r in routes if not isinstance(r, StrictJSONRoute)] == []
