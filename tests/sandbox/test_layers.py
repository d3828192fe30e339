"""The sandbox's modules import each other in layers, downwards only: no cycle, and no lazy import.

Why: the sandbox once kept its rules, models, routes and HTTP layer in one module that the web inbox
reached into, and that module imported the inbox inside a function to dodge the cycle. The modules
are now layered (the rules and the text formatting; answers and the store; the request guard, the
Callbell routes and the inbox side by side; the server; the entry points), and these tests read every
module's imports with :mod:`ast` (those under ``TYPE_CHECKING`` and inside functions included) so
that a new import going sideways or upwards fails here, with its module and line, rather than as a
puzzling import error one day.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_callbell.sandbox

PACKAGE = "airflow_provider_callbell.sandbox"
ROOT = Path(airflow_provider_callbell.sandbox.__file__).parent

#: Each module's layer: a module imports only from lower layers, so modules of one layer never
#: import each other (the Callbell routes and the inbox both sit on the store, apart).
LAYERS = {
    "rules": 0,
    "formatting": 0,
    "answers": 1,
    "store": 1,
    "guard": 2,
    "api": 2,
    "inbox": 2,
    "server": 3,
    "__init__": 4,
    "__main__": 4,
    "pytest_plugin": 4,
}


def sandbox_imports(module: str) -> list[tuple[str, int, bool]]:
    """The sandbox modules ``module`` imports: (name, line, whether inside a function or class)."""
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    nested = {
        id(node)
        for scope in ast.walk(tree)
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for node in ast.walk(scope)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE if node.level else (node.module or "")
            if node.level and node.module:
                base = f"{PACKAGE}.{node.module}"
            # "from the package import inbox" imports the submodule; any other name comes from __init__
            targets = [
                f"{base}.{alias.name}" if base == PACKAGE and alias.name in LAYERS else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == PACKAGE:
                found.append(("__init__", node.lineno, id(node) in nested))
            elif target.startswith(f"{PACKAGE}."):
                found.append(
                    (target.removeprefix(f"{PACKAGE}.").split(".")[0], node.lineno, id(node) in nested)
                )
    return found


def test_every_module_has_a_layer() -> None:
    modules = {path.stem for path in ROOT.glob("*.py")}
    assert modules == set(LAYERS), "give each new sandbox module a layer in LAYERS"


def test_the_imports_are_read() -> None:
    """Guards the tests below against passing because the parser found nothing."""
    assert {name for name, _, _ in sandbox_imports("server")} >= {"api", "inbox", "store", "rules"}
    assert {name for name, _, _ in sandbox_imports("__init__")} == {"server"}


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_go_down_only(module: str) -> None:
    upwards = [
        f"{module}.py:{line} imports {name} (layer {LAYERS[name]}, not below {LAYERS[module]})"
        for name, line, _ in sandbox_imports(module)
        if LAYERS[name] >= LAYERS[module]
    ]
    assert not upwards


@pytest.mark.parametrize(("module", "other"), [("inbox", "api"), ("api", "inbox")])
def test_the_inbox_and_the_callbell_routes_never_import_each_other(module: str, other: str) -> None:
    assert other not in {name for name, _, _ in sandbox_imports(module)}


def test_no_import_cycle() -> None:
    """Whatever the layers say: the import graph must sort, or it has a cycle."""
    graph = {module: {name for name, _, _ in sandbox_imports(module)} for module in LAYERS}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = reversed(exc.args[1])  # graphlib lists each module before the one that imports it
        pytest.fail(f"import cycle: {' imports '.join(cycle)}")


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_no_lazy_import_of_a_sandbox_module(module: str) -> None:
    """An import inside a function is how a cycle hides; every sandbox import is at the top."""
    lazy = [f"{module}.py:{line} imports {name}" for name, line, inside in sandbox_imports(module) if inside]
    assert not lazy


@pytest.mark.parametrize("module", sorted(set(LAYERS) - {"__init__", "__main__"}))
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """Importing any module first (as a test or a tool might) works: no order-dependent cycle."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}.{module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
