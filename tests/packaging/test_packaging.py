"""What the docs and the test environments say about the package agrees with its metadata."""

from __future__ import annotations

import re
import sys
from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement

import airflow_provider_callbell

ROOT = Path(__file__).resolve().parents[2]


def _airflow_requirement() -> Requirement:
    (requirement,) = [
        Requirement(line)
        for line in distribution("airflow-provider-callbell").requires or []
        if Requirement(line).name == "apache-airflow"
    ]
    return requirement


class TestSupportedRange:
    def test_readme_states_the_range_of_the_metadata(self):
        readme = (ROOT / "README.md").read_text()
        assert f"`apache-airflow{_airflow_requirement().specifier}`" in readme

    def test_every_tested_airflow_line_is_in_the_range(self):
        pins = {
            path.name: re.search(r"^apache-airflow==(\S+)", path.read_text(), re.M)[1]
            for path in (ROOT / "requirements").glob("airflow-*.in")
        }
        assert len(pins) >= 2, pins
        for pin in pins.values():
            assert _airflow_requirement().specifier.contains(pin), pins


class TestVersion:
    def test_changelog_has_a_section_for_the_version(self):
        changelog = (ROOT / "CHANGELOG.md").read_text()
        assert re.search(rf"^## \[{re.escape(airflow_provider_callbell.__version__)}\]", changelog, re.M)


class TestPythonVersions:
    def test_the_python_the_tests_run_on_is_a_classifier(self):
        classifiers = distribution("airflow-provider-callbell").metadata.get_all("Classifier") or []
        versions = {
            c.rsplit(" :: ", 1)[1]
            for c in classifiers
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
        }
        assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions, versions
