"""DAG-level callbacks as production runs them: a scheduler, a DAG processor and an API server.

``airflow dags test`` runs DAG-level callbacks in its own process; in production the DAG processor
runs them after the scheduler has finished the run. This test starts those components (on Airflow
2.x the scheduler alone, whose own DAG file processors run the callbacks) in a throwaway
AIRFLOW_HOME (SQLite, free ports, each component in its own process group), triggers
``example_callbell_dag_callbacks`` once failing and once succeeding, and waits for both messages at
the sandbox. Every process it started is killed at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.helpers import BIN, Airflow

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_callbell.sandbox import CallbellSandbox

pytestmark = pytest.mark.integration

DAG_ID = "example_callbell_dag_callbacks"
WAIT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Services(Airflow):
    """Scheduler, DAG processor and API server sharing one throwaway AIRFLOW_HOME (SQLite).

    Airflow 2.x needs neither: its scheduler runs tasks (SequentialExecutor, the one SQLite allows)
    and DAG-level callbacks (in its DAG file processors) by itself.
    """

    COMPONENTS = (
        (("api-server", "--port", "{api_port}"), ("scheduler",), ("dag-processor",))
        if AIRFLOW_V_3_0_PLUS
        else (("scheduler",),)
    )

    def __init__(self, home: Path, callbell_sandbox: CallbellSandbox) -> None:
        super().__init__(home)  # the example DAGs, the venv's bin first on PATH
        self.api_port = free_port()
        self.env.update(
            {
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                # Tasks reach the API server on its non-default port; every component signs and
                # checks the tasks' tokens with the same secret.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.api_port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # Free ports only, so that parallel test runs on one machine do not collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                # Fast loops: a run is picked up and its callback queued within a second or two.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW_CONN_CALLBELL_DEFAULT": callbell_sandbox.connection_json,
            }
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str) -> str:
        """``airflow <args>``'s output; a failure shows its stderr."""
        proc = self.cli(*args, check=False)
        assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
        return proc.stdout

    @contextlib.contextmanager
    def running(self) -> Iterator[Services]:
        self.run("db", "migrate")
        self.run("dags", "reserialize")  # the DAG is in the database before anything is triggered
        try:
            for component in self.COMPONENTS:
                args = [arg.format(api_port=self.api_port) for arg in component]
                with open(self.home / f"{args[0]}.log", "wb") as log:
                    self.processes.append(
                        subprocess.Popen(
                            [str(BIN / "airflow"), *args],
                            env=self.env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,  # its own process group, killed as a whole
                        )
                    )
            if AIRFLOW_V_3_0_PLUS:
                self.wait_until_api_answers()  # a task started before it would fail without running
            yield self
        finally:
            self.stop()

    def wait_until_api_answers(self) -> None:
        url = f"http://localhost:{self.api_port}/execution/health"
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            assert all(proc.poll() is None for proc in self.processes), self.logs()
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.5)
        raise AssertionError(f"the API server did not answer {url} within {WAIT_SECONDS} s\n{self.logs()}")

    def stop(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.processes:  # children that outlived their parent, in the same group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}" for path in self.home.glob("*.log")
        )


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
