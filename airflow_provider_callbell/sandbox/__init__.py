"""A local stand-in for the Callbell REST API v1 (like ``moto`` for AWS), standard library only.

Start one with ``with CallbellSandbox() as sandbox:`` and point the provider at it through
``sandbox.connection_json``; run it by hand with ``python -m airflow_provider_callbell.sandbox``; or use
the ``callbell_sandbox`` fixture from :mod:`airflow_provider_callbell.sandbox.pytest_plugin`. Nothing
here imports Airflow or ``requests``, so it starts fast and stays independent of the client it tests.
"""

from __future__ import annotations

from airflow_provider_callbell.sandbox.server import CallbellSandbox

__all__ = ["CallbellSandbox"]
