"""The client needs only the wire contract: no export, model_repository, perf or Paddle, and no import cycle.

It runs where none of those are (the server image's helm test, a user's machine); `evaluate --reference`
reaches the export through a process of its own (client/reference.py), never through an import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "client"
FORBIDDEN = {"export", "model_repository", "perf", "paddle", "paddleclas", "paddle2onnx"}
MODULES = [*sorted(f"client.{p.stem}" for p in CLIENT.glob("*.py") if p.stem != "__init__"), "client"]


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from client import cli`
    return names


def module_path(name: str) -> Path:
    parts = name.split(".")
    return REPO.joinpath(*parts, "__init__.py") if len(parts) == 1 else REPO.joinpath(*parts).with_suffix(".py")


@pytest.mark.parametrize("name", MODULES)
def test_no_client_module_imports_the_server_side(name: str) -> None:
    found = {n for n in imports(module_path(name)) if n.split(".")[0] in FORBIDDEN}
    assert not found, f"{name} imports {sorted(found)}"


def test_the_client_modules_import_no_cycle() -> None:
    graph = {name: {n for n in imports(module_path(name)) if n in MODULES and n != name} for name in MODULES}
    graph = {name: edges - {"client"} for name, edges in graph.items()}  # the package's own __init__ re-exports

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = [name for name in MODULES if reaches(name, name, {name})]
    assert not cycles, {name: sorted(graph[name]) for name in cycles}


BLOCKER = f"""
import importlib, runpy, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(FORBIDDEN)!r}:
            raise ModuleNotFoundError(f"{{name}} is blocked: the client must not import it")

sys.meta_path.insert(0, Blocked())
for module in {MODULES!r}:
    importlib.import_module(module)
sys.argv = ["client", "--help"]
runpy.run_module("client", run_name="__main__")
"""


def test_every_client_module_and_the_command_load_with_the_server_side_blocked() -> None:
    """The same, at run time: a blocked import anywhere on the path fails the run."""
    result = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "classify" in result.stdout and "evaluate" in result.stdout and "smoke" in result.stdout
