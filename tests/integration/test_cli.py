"""The provider as Airflow's command line sees it after install."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import airflow_provider_callbell
from tests.helpers import read_lines_in_background

if TYPE_CHECKING:
    import queue

pytestmark = pytest.mark.integration


def test_providers_list_shows_the_provider(airflow):
    listed = json.loads(airflow.cli("providers", "list", "--output", "json").stdout)
    (provider,) = [p for p in listed if p["package_name"] == "airflow-provider-callbell"]
    assert provider["version"] == airflow_provider_callbell.__version__


def add_connection(airflow, conn_id: str, host: str, token: str) -> None:
    airflow.cli(
        "connections",
        "add",
        conn_id,
        "--conn-type",
        "callbell",
        "--conn-host",
        host,
        "--conn-password",
        token,
    )


def test_connection_added_by_cli_is_tested_against_the_sandbox(airflow, callbell_sandbox):
    enabled = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    add_connection(airflow, "callbell_cli", callbell_sandbox.url, callbell_sandbox.token)
    ok = airflow.cli("connections", "test", "callbell_cli", env=enabled)
    assert "Connection success!" in ok.stdout
    assert [(r["method"], r["path"], r["status"]) for r in callbell_sandbox.requests] == [
        ("GET", "/v1/auth/me", 200)
    ]

    wrong = "wrong-token-5d1c"
    add_connection(airflow, "callbell_bad", callbell_sandbox.url, wrong)
    refused = airflow.cli("connections", "test", "callbell_bad", env=enabled, check=False)
    output = refused.stdout + refused.stderr
    assert "Connection failed!" in output
    assert "HTTP 401" in output
    assert "check the password of the Callbell connection" in output
    assert wrong not in output


@pytest.fixture
def sandbox_cli():
    """Start ``python -m airflow_provider_callbell.sandbox`` with the given arguments; kill its group after."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_callbell.sandbox", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, killed whole below
        )
        started.append(process)
        return process, read_lines_in_background(process)

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_sandbox_export_line_pasted_into_a_shell_reaches_python(sandbox_cli):
    process, lines = sandbox_cli("--port", "0", "--token", "cli-paste-token")
    export_line = lines.get(timeout=15).rstrip("\n")
    assert export_line.startswith("export AIRFLOW_CONN_CALLBELL_DEFAULT='{")
    # --port 0 picked a free port, and the sandbox says which.
    listening = lines.get(timeout=5).strip()
    port = int(re.fullmatch(r"Callbell sandbox listening on http://127\.0\.0\.1:(\d+)/v1", listening)[1])
    assert port != 0
    # What a user does: paste the line into a shell, then use the provider from Python in that shell.
    check = "from airflow_provider_callbell.hooks.callbell import CallbellHook; print(CallbellHook().test_connection())"
    pasted = subprocess.run(
        ["bash", "-c", f"{export_line}\n{shlex.quote(sys.executable)} -c {shlex.quote(check)}"],
        env={k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_CALLBELL_DEFAULT"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "(True, 'Connected to Callbell as " in pasted.stdout, pasted.stderr[-2000:]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_sandbox_on_a_busy_port_is_a_one_line_error(sandbox_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, _ = sandbox_cli("--port", str(port))
        assert process.wait(timeout=30) == 1
        error = process.stderr.read()
    assert error.count("\n") == 1, error
    assert "Traceback" not in error
    assert error.startswith(f"Callbell sandbox: cannot listen on 127.0.0.1:{port}: ")
    assert "choose another --port (--port 0 picks a free one)" in error
