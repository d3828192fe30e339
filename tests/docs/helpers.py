"""Reading the README's and the docs' code blocks: what the docs tests and the DAG-run tests share.

A docs page may show a piece of code instead of a whole DAG file (a task without its DAG, a call that
sends) by putting the MyST comment line ``% fragment: <why>`` right above the block.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
FRAGMENT_MARKER = "% fragment"

#: The docs write DAG files for Airflow 3; the Compatibility page tells 2.x users these imports.
AIRFLOW_2_IMPORTS = {"DAG": "from airflow import DAG", "task": "from airflow.decorators import task"}


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str  # the fence's info string, e.g. "python", "bash", "{literalinclude} ../x.py"
    code: str  # dedented, as a user copies it
    fragment: bool  # marked `% fragment` on purpose: shown, not run

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[CodeBlock]:
    """The fenced blocks of a Markdown file, indented ones (in list items) included."""
    lines = path.read_text().splitlines()
    blocks = []
    number = 0
    while number < len(lines):
        stripped = lines[number].lstrip()
        fence = re.match(r"(`{3,}|~{3,})(.*)", stripped)
        if not fence:
            number += 1
            continue
        indent = len(lines[number]) - len(stripped)
        end = number + 1
        while end < len(lines) and lines[end].strip() != fence[1]:
            end += 1
        body = "\n".join(line[indent:] for line in lines[number + 1 : end])
        marked = number > 0 and lines[number - 1].strip().startswith(FRAGMENT_MARKER)
        blocks.append(CodeBlock(path, number + 1, fence[2].strip(), textwrap.dedent(body) + "\n", marked))
        number = end + 1
    return blocks


def runnable_blocks(path: Path) -> list[CodeBlock]:
    return [block for block in code_blocks(path) if block.language == "python" and not block.fragment]


def as_airflow_2(block: str) -> str | None:
    """The block as a 2.x user writes it, or ``None`` for a feature of Airflow 3 alone (Deadline Alerts,
    Human-in-the-loop tasks)."""
    if "airflow.sdk.definitions" in block or "airflow.providers.standard.operators.hitl" in block:
        return None

    def rewrite(match: re.Match[str]) -> str:
        return "\n".join(AIRFLOW_2_IMPORTS[name.strip()] for name in match[1].split(","))

    return re.sub(r"^from airflow\.sdk import (.+)$", rewrite, block, flags=re.M)
