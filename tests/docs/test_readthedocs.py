"""Read the Docs builds the same site as ``make docs``, and nothing claims a publication that has not happened.

``.readthedocs.yaml`` cannot call ``make docs`` (Read the Docs runs its own ``sphinx-build``), so the test
compares the two: what ``make -n -B docs`` would run (every command of the target and of the venv it
needs, expanded by make itself) against what the configuration tells Read the Docs to install and build.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from importlib.metadata import distribution
from typing import Any

import yaml

from tests.docs.helpers import PAGES, README, ROOT

#: Where the project is published today. Empty: neither Read the Docs nor PyPI has it yet. Add
#: "readthedocs.io" the day the project is imported there, "pypi.org" the day it is uploaded.
PUBLISHED_ON: set[str] = set()
#: The addresses a page or the metadata would give a reader of this project once published there
#: (links to other projects' pages on these hosts, such as the ``limits`` library's docs, are fine).
PUBLICATION_HOSTS = {
    "readthedocs.io": r"https?://airflow-provider-callbell\.readthedocs\.io\S*",
    "pypi.org": r"https?://pypi\.org/project/airflow-provider-callbell\S*",
}


def make_docs_commands() -> list[list[str]]:
    """The commands ``make docs`` runs from nothing (``-B``: as if no venv existed), without running them."""
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "docs"],
        cwd=ROOT,
        # Under `make test`, not the outer make's flags (jobs, output sync, its jobserver), nor the
        # Airflow line it runs (`make test-2.11` exports AIRFLOW_LINE): `make docs` as a user types it.
        env={
            k: v
            for k, v in os.environ.items()
            if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "AIRFLOW_LINE", "PYTEST_ARGS"}
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return [shlex.split(line) for line in dry_run.stdout.splitlines() if line.strip()]


def readthedocs() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    return config


def test_readthedocs_builds_what_make_docs_builds():
    config = readthedocs()
    assert config["version"] == 2
    assert config["build"]["os"].startswith("ubuntu-")

    (sphinx_build,) = [args for args in make_docs_commands() if args[0].endswith("/sphinx-build")]
    *options, source_dir, _out_dir = sphinx_build[1:]
    assert config["sphinx"]["configuration"] == f"{source_dir}/conf.py"
    assert (ROOT / config["sphinx"]["configuration"]).is_file()
    assert config["sphinx"]["builder"] == options[options.index("-b") + 1]
    # Warnings are errors on both; Read the Docs' fail_on_warning is -W --keep-going.
    assert {"-W", "--keep-going"} <= set(options)
    assert config["sphinx"]["fail_on_warning"] is True
    # Read the Docs cannot pass -n: the configuration sets nitpicky itself.
    assert "-n" in options
    assert re.search(r"^nitpicky = True$", (ROOT / source_dir / "conf.py").read_text(), re.M)


def test_readthedocs_installs_what_make_docs_installs():
    installs = [args for args in make_docs_commands() if args[1:3] == ["pip", "install"]]
    requirements = {args[args.index("-r") + 1] for args in installs if "-r" in args}
    editable = {args[args.index("-e") + 1] for args in installs if "-e" in args}
    assert requirements == {"requirements/airflow-3.3.txt"}, installs  # the floor: the parse found them
    assert editable == {"."}, installs

    steps = readthedocs()["python"]["install"]
    assert {step["requirements"] for step in steps if "requirements" in step} == requirements
    assert [step["path"] for step in steps if step.get("method") == "pip"] == sorted(editable)
    for path in requirements:
        assert (ROOT / path).is_file()


def test_readthedocs_python_is_the_tested_python():
    pyproject = (ROOT / "pyproject.toml").read_text()
    tested = set(re.findall(r'^    "Programming Language :: Python :: (3\.\d+)",', pyproject, re.M))
    assert tested, "the classifiers name the Python the tests run on"
    assert {readthedocs()["build"]["tools"]["python"]} == tested


def test_nothing_is_called_published_before_it_is():
    """No link to Read the Docs or PyPI in the README, the docs or the package's URLs, until it is there.

    A page may still name the future address in words (``once it is imported``), but not as a link
    a reader would follow, and the ``Documentation`` URL points at what exists: the docs in the repository.
    """
    project_urls = distribution("airflow-provider-callbell").metadata.get_all("Project-URL") or []
    texts = {"package metadata": "\n".join(project_urls)}
    texts |= {path.name: path.read_text() for path in (README, *PAGES)}
    for host, pattern in PUBLICATION_HOSTS.items():
        if host in PUBLISHED_ON:
            continue
        for name, text in texts.items():
            links = re.findall(rf"<{pattern}>|\]\({pattern}\)|, {pattern}", text)
            assert not links, f"{name} links to {host}, where the project is not published: {links}"
