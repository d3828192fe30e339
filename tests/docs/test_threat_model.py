"""The threat model page cites, for every guarantee, the test that proves it: each cited test exists.

A citation is ``tests/<path>.py`` optionally followed by ``::Class``, ``::Class::test`` or
``::test``; a bare ``test_...`` or ``Class::test_...`` name in the same table cell belongs to the
file cited before it.
Renaming or deleting a cited test fails here, so the page cannot drift from the suite.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from tests.docs.helpers import ROOT

if TYPE_CHECKING:
    from pathlib import Path

PAGE = ROOT / "docs" / "threat-model.md"
CITATION = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)*)`|`((?:Test\w+::)?test_\w+|Test\w+)`")


def defined_names(path: Path) -> set[str]:
    """Every ``Class``, ``Class::method`` and top-level function of a test file."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names |= {
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
    return names


def citations() -> list[tuple[str, str]]:
    """(file, name) pairs from the tables' "proved by" cells, name "" for a whole file; a bare name
    belongs to the last file cited before it in its cell."""
    found = []
    for line in PAGE.read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| guarantee"):
            continue
        proof = line.rstrip(" |").rsplit(" | ", 1)[-1]  # the "proved by" cell
        last_file = None
        for match in CITATION.finditer(proof):
            file, name, bare = match.groups()
            if file:
                last_file = file
                found.append((file, name.removeprefix("::")))
            else:
                assert last_file, f"{bare} is cited without a test file before it: {line}"
                found.append((last_file, bare))
    return found


def test_every_cited_test_exists():
    cited = citations()
    assert len(cited) > 40, "the page cites a test for each guarantee"
    missing = []
    for file, name in cited:
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
            continue
        names = defined_names(path)
        if name and name not in names and not any(n.endswith(f"::{name}") for n in names):
            missing.append(f"{file}::{name}")
    assert not missing, f"the threat model cites tests that do not exist: {missing}"
