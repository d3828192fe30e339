"""The API token never lands anywhere under AIRFLOW_HOME: logs, the metadata database, rendered fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_callbell.sandbox import CallbellSandbox
from tests.integration.helpers import Airflow, DagRunResult

pytestmark = pytest.mark.integration

TOKEN = "cbTok-LEAKCHECK-7f3a9e21d4"
# Airflow's own in-process test supervisor (``airflow dags test`` only) logs at DEBUG every message a
# task sends it, including the MaskSecret request with which Airflow itself masks a connection's
# password when the connection is read. That line is Airflow's, not this provider's; it is the only
# place the token may appear, and only at DEBUG under ``dags test``.
AIRFLOW_OWN_DEBUG_LINE = f"msg=MaskSecret(value='{TOKEN}'"


def run_token_check(tmp_path: Path, **env: str) -> tuple[Airflow, DagRunResult]:
    """One run, three sends with the token: clean, retried after a 503, refused with 401."""
    airflow = Airflow(tmp_path / "airflow_home", dags_folder=Path(__file__).parent / "dags")
    airflow.migrate()
    with (
        CallbellSandbox(token=TOKEN) as clean,
        CallbellSandbox(token=TOKEN, error_rate=0.5, seed=4) as flaky,  # seed 4: the first send gets a 503
        CallbellSandbox(token="another-token") as refusing,
    ):
        connections = {
            "AIRFLOW_CONN_CALLBELL_CLEAN": clean.connection_json,
            "AIRFLOW_CONN_CALLBELL_RETRIED": flaky.connection_json,
            "AIRFLOW_CONN_CALLBELL_REFUSED": refusing.connection_json.replace("another-token", TOKEN),
        }
        result = airflow.dags_test("callbell_token_check", None, **connections, **env)
        assert [len(clean.messages), len(flaky.messages), len(refusing.messages)] == [1, 1, 0]
    assert result.returncode != 0  # the refused send failed its task, and so the run
    assert "HTTP 503; retry 1 of 3" in result.output  # the retry log lines are among what is checked
    assert "HTTP 401" in result.output
    return airflow, result


def files_with_token(home: Path) -> list[str]:
    return [str(path) for path in home.rglob("*") if path.is_file() and TOKEN.encode() in path.read_bytes()]


def test_token_appears_in_no_file_under_airflow_home_nor_any_log_line_of_ours(tmp_path):
    """At DEBUG, the most verbose level: what holds at DEBUG holds at every level above it."""
    airflow, result = run_token_check(tmp_path, AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG")
    assert re.search(r"\[debug|} DEBUG - ", result.output)  # the log formats of Airflow 3 and 2.x
    lines = [line for line in result.output.splitlines() if TOKEN in line]
    assert all(AIRFLOW_OWN_DEBUG_LINE in line for line in lines), lines
    assert (airflow.home / "airflow.db").exists()
    assert files_with_token(airflow.home) == []
