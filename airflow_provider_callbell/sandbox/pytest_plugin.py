"""The ``callbell_sandbox`` pytest fixture: a fresh Callbell sandbox per test, wired into Airflow.

Enable it with ``pytest_plugins = ["airflow_provider_callbell.sandbox.pytest_plugin"]`` in a
``conftest.py`` or with ``-p airflow_provider_callbell.sandbox.pytest_plugin``. It sets
``AIRFLOW_CONN_CALLBELL_DEFAULT`` so hooks and operators built inside the test talk to the sandbox, and
uses a short status interval so delivery-status tests finish quickly. Airflow is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_callbell.sandbox.server import CallbellSandbox

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def callbell_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallbellSandbox]:
    """A running sandbox on a free port, with the default Callbell connection pointing at it."""
    with CallbellSandbox(status_interval=0.2) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", sandbox.connection_json)
        yield sandbox
