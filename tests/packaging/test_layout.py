"""The package's layout rules: rooms of a readable size, imports that go one way, tests that share helpers
through importable modules.

Each rule held when it was written (issue 20); these tests keep the next change from quietly breaking it.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_provider_callbell"
TESTS = ROOT / "tests"
#: A module past this many lines holds more than one concern: split it.
MAX_MODULE_LINES = 800


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is imported: not under ``TYPE_CHECKING``, not in a function."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                found.add(sub.module)
                found.update(f"{sub.module}.{alias.name}" for alias in sub.names)
            elif isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names)
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_of_one_concern(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines; split it by concern"


def test_the_package_has_no_import_cycle() -> None:
    graph = {name: module_level_imports(path) & MODULES.keys() for name, path in MODULES.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' imports '.join(err.args[1])}")


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from b import x\n")
    (tmp_path / "b.py").write_text("import a\n")
    graph = {name: module_level_imports(tmp_path / f"{name}.py") & {"a", "b"} for name in ("a", "b")}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda path: str(path.relative_to(TESTS)))
def test_tests_share_helpers_through_modules_not_conftests_or_other_tests(path: Path) -> None:
    """Fixtures live in ``conftest.py`` files; anything else two tests share lives in a helpers module."""
    imported = {name.rsplit(".", 1)[-1] for name in module_level_imports(path) if name.startswith("tests.")}
    tree = ast.parse(path.read_text())
    imported |= {
        part
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests.")
        for part in node.module.split(".")[1:]
    }
    wrong = sorted(name for name in imported if name == "conftest" or name.startswith("test_"))
    assert not wrong, f"{path.relative_to(ROOT)} imports from {wrong}: move what it needs to a helpers module"
