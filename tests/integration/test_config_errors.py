"""Configuration errors in a real Airflow run: they fail the task at its first try, with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS

pytestmark = pytest.mark.integration

OUTSIDE_A_TASK = (
    " (outside a task, Airflow 3 reads connections from environment variables and secrets backends only, "
    "not from its database)"
)

TEST_DAGS = Path(__file__).resolve().parent / "dags"


def test_missing_connection_and_bad_base_url_fail_at_the_first_try(airflow, callbell_sandbox):
    schemeless = json.dumps({"conn_type": "callbell", "password": "t0ken-x", "host": "localhost:8788/v1"})
    result = airflow.dags_test(
        "callbell_config_fail",
        callbell_sandbox,
        AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS),
        AIRFLOW_CONN_CALLBELL_SCHEMELESS=schemeless,
    )
    assert result.returncode != 0, "the DAG fails on purpose"
    assert result.state == "failed"
    # One message per task, from on_failure_callback at try 1 of 3: on_retry_callback never ran.
    texts = sorted(m["body"]["content"]["text"].splitlines()[:2] for m in callbell_sandbox.messages)
    run = result.run_id
    assert texts == [
        [
            f"❌ DAG callbell_config_fail: task send_via_callbell_missing failed in run {run} (try 1 of 3)",
            "> CallbellConnectionConfigError: Connection 'callbell_missing' is not defined: define it with "
            "`airflow connections add callbell_missing --conn-type callbell --conn-password <API token>` or "
            "with the environment variable AIRFLOW_CONN_CALLBELL_MISSING="
            """'{"conn_type": "callbell", "password": "<API token>"}'"""
            + (OUTSIDE_A_TASK if AIRFLOW_V_3_0_PLUS else ""),
        ],
        [
            f"❌ DAG callbell_config_fail: task send_via_callbell_schemeless failed in run {run} (try 1 of 3)",
            "> CallbellConnectionConfigError: Connection 'callbell_schemeless': the host 'localhost:8788/v1' "
            "has no scheme; a local server such as the sandbox is plain http: use "
            "'http://localhost:8788/v1'; set its host (\"Base URL\" in the Connections UI) to an http(s) "
            "URL such as 'https://api.callbell.eu/v1'",
        ],
    ]
