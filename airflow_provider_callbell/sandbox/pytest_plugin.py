"""The ``callbell_sandbox`` pytest fixture: a fresh Callbell sandbox per test, wired into Airflow.

Enable it with ``pytest_plugins = ["airflow_provider_callbell.sandbox.pytest_plugin"]`` in a
``conftest.py`` or with ``-p airflow_provider_callbell.sandbox.pytest_plugin``. It sets
``AIRFLOW_CONN_CALLBELL_DEFAULT`` so hooks and operators built inside the test talk to the sandbox, and
uses a short status interval so delivery-status tests finish quickly. Airflow is not imported here.

A test (or a module, through ``pytestmark``) sets the sandbox's options with the
``callbell_sandbox`` marker, which takes :class:`~airflow_provider_callbell.sandbox.CallbellSandbox`'s
keyword arguments:

.. code-block:: python

    @pytest.mark.callbell_sandbox(status_interval=1.5, failing_recipients={"+31600000000": "blocked"})
    def test_failed_delivery(callbell_sandbox): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_callbell.sandbox.server import CallbellSandbox

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["DEFAULT_OPTIONS", "callbell_sandbox"]  # pytest_configure is pytest's hook, not an API

#: What the fixture passes to ``CallbellSandbox`` unless the marker says otherwise.
DEFAULT_OPTIONS: dict[str, Any] = {"status_interval": 0.2}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "callbell_sandbox(**options): CallbellSandbox options for the callbell_sandbox fixture"
    )


@pytest.fixture
def callbell_sandbox(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CallbellSandbox]:
    """A running sandbox on a free port, with the default Callbell connection pointing at it."""
    marker = request.node.get_closest_marker("callbell_sandbox")
    options = {**DEFAULT_OPTIONS, **(marker.kwargs if marker else {})}
    with CallbellSandbox(**options) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", sandbox.connection_json)
        yield sandbox
