"""DAG-level callbacks as production runs them: a scheduler, a DAG processor and an API server.

``airflow dags test`` runs DAG-level callbacks in its own process; in production the DAG processor
runs them after the scheduler has finished the run. This test starts those components (on Airflow
2.x the scheduler alone, whose own DAG file processors run the callbacks) in a throwaway
AIRFLOW_HOME (SQLite, free ports, each component in its own process group), triggers
``example_callbell_dag_callbacks`` once failing and once succeeding, and waits for both messages at
the sandbox. Every process it started is killed at the end, whatever happened.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

from tests.integration.helpers import WAIT_SECONDS, Services

if TYPE_CHECKING:
    from airflow_provider_callbell.sandbox import CallbellSandbox

pytestmark = pytest.mark.integration

DAG_ID = "example_callbell_dag_callbacks"


def wait_for_messages(callbell_sandbox: CallbellSandbox, count: int, services: Services) -> list[str]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        texts = [m["body"]["content"]["text"] for m in callbell_sandbox.messages]
        if len(texts) >= count:
            return texts
        assert all(proc.poll() is None for proc in services.processes), services.logs()
        time.sleep(0.5)
    raise AssertionError(f"{count} message(s) expected within {WAIT_SECONDS} s\n{services.logs()}")


def wait_for_variable(services: Services, key: str, run_id: str) -> Any:
    """The Variable's JSON value once a callback of ``run_id`` wrote it (it is written after the send)."""
    deadline = time.monotonic() + 30
    while True:
        out = services.run("variables", "get", key)
        value = json.loads(out[out.index("{") :])
        if value.get("run_id") == run_id or time.monotonic() > deadline:
            return value
        time.sleep(1)


def test_dag_level_callbacks_under_a_real_scheduler(tmp_path, callbell_sandbox):
    with Services(tmp_path, callbell_sandbox).running() as services:
        services.run("dags", "trigger", DAG_ID, "--run-id", "broken", "--conf", json.dumps({"fail": True}))
        wait_for_messages(callbell_sandbox, 1, services)
        services.run("dags", "trigger", DAG_ID, "--run-id", "fixed")
        texts = wait_for_messages(callbell_sandbox, 2, services)
        state = wait_for_variable(services, f"callbell_notifier.{DAG_ID}", "fixed")
        logs = services.logs()

    assert [text.splitlines()[0] for text in texts] == [
        f"❌ DAG {DAG_ID} failed in run broken (task_failure; failed task: load)",
        f"✅ DAG {DAG_ID} succeeded in run fixed",
    ], logs
    # only_on_change remembered the outcome in a Variable that the DAG processor wrote.
    assert state == {"health": "ok", "notified_at": mock.ANY, "run_id": "fixed"}, logs
