"""The code examples of the README and the docs are code users copy: each imports as a DAG file would.

Every ```` ```python ```` block of ``README.md`` and of the pages under ``docs/`` is a complete DAG file:
the test writes it to a DAG folder, imports it with Airflow's ``DagBag`` and serializes every DAG it
defines. A docs page may show a piece of code instead (a task without its DAG, a call that sends) by
putting the MyST comment line ``% fragment: <why>`` right above the block: the test skips that block on
purpose. The README has no fragments (GitHub and PyPI would show the ``%`` line).
"""

from __future__ import annotations

import re
from importlib.metadata import distribution
from typing import TYPE_CHECKING

import pytest
from packaging.version import Version

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_VERSION
from tests.compat import DagBag, DagSerialization
from tests.docs.helpers import (
    FRAGMENT_MARKER,
    PAGES,
    README,
    CodeBlock,
    as_airflow_2,
    code_blocks,
    runnable_blocks,
)

if TYPE_CHECKING:
    from pathlib import Path


def import_as_dag_files(blocks: list[CodeBlock], folder: Path) -> int:
    """Import the blocks as the files of one DAG folder; return how many DAGs they define.

    Each file is named after its block's place (``bulk_md_line_20.py``), which the import errors show.
    """
    sources = {f"{block.path.name.replace('.', '_')}_line_{block.line}.py": block.code for block in blocks}
    if not AIRFLOW_V_3_0_PLUS:
        sources = {
            name: as_airflow_2(code) for name, code in sources.items() if as_airflow_2(code) is not None
        }
        # What is left of airflow.sdk is a guarded import (try: ... except ImportError:) for both lines.
        assert not re.search(r"^from airflow\.sdk", "".join(sources.values()), re.M)
    for name, source in sources.items():
        (folder / name).write_text(source)
    # safe_mode=False: a notifier-only snippet mentions no DAG, and must be imported all the same.
    dagbag = DagBag(dag_folder=str(folder), safe_mode=False)
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == sum("DAG(" in source for source in sources.values())
    for dag in dagbag.dags.values():
        assert DagSerialization.from_dict(DagSerialization.to_dict(dag)).dag_id == dag.dag_id
    return len(dagbag.dags)


def test_readme_dags_import_and_serialize(tmp_path):
    blocks = runnable_blocks(README)
    # The two-minute start: a DAG with a send task and a notifier, and the notifier alone.
    assert any("CallbellSendMessageOperator(" in block.code for block in blocks)
    assert any("CallbellNotifier(" in block.code for block in blocks)
    assert import_as_dag_files(blocks, tmp_path) >= 1


@pytest.mark.parametrize(
    "page", [page for page in PAGES if runnable_blocks(page)], ids=lambda page: page.name
)
def test_docs_examples_import_and_serialize(page, tmp_path):
    import_as_dag_files(runnable_blocks(page), tmp_path)


def test_every_python_block_is_run_or_marked_as_a_fragment():
    """No Python block escapes the tests by its spelling, and no marker misses its block."""
    pages = [README, *PAGES]
    for path in pages:
        lines = path.read_text().splitlines()
        blocks_by_line = {block.line: block for block in code_blocks(path)}
        for number, line in enumerate(lines, start=1):
            if line.strip().startswith(FRAGMENT_MARKER):
                block = blocks_by_line.get(number + 1)
                assert block is not None, (
                    f"{path.name}:{number}: '% fragment' must be right above a ```python fence"
                )
                assert block.language == "python", f"{block}: '% fragment' marks a {block.language} block"
        for block in blocks_by_line.values():
            words = set(block.language.replace("{", " ").replace("}", " ").split())
            if block.language != "python" and {"py", "python", "python3", "pycon", "ipython"} & words:
                pytest.fail(f"{block}: write Python examples as ```python, so that this test runs them")
    assert not [block for block in code_blocks(README) if block.fragment], "the README has no fragments"
    run = [block for page in PAGES for block in runnable_blocks(page)]
    fragments = [block for page in PAGES for block in code_blocks(page) if block.fragment]
    # A floor, so that a parser that finds nothing cannot pass: the pages hold well over this many.
    assert len(run) >= 10, [str(block) for block in run]
    assert fragments, "the fragment marker is recognised"


def test_the_documentation_url_is_in_the_readme_and_in_airflow():
    """The ``Documentation`` project URL is where the README sends readers, and what Airflow 3.3+ links."""
    project_urls = distribution("airflow-provider-callbell").metadata.get_all("Project-URL") or []
    url = dict(entry.split(", ", 1) for entry in project_urls)["Documentation"]
    assert url.startswith("https://")
    assert f"<{url}>" in README.read_text()

    from airflow.providers_manager import ProvidersManager

    info = ProvidersManager().providers["airflow-provider-callbell"].data
    if Version(AIRFLOW_VERSION) >= Version("3.3"):  # the Providers page's link, read from the metadata
        assert info["documentation-url"] == url
