"""A real Human-in-the-loop task (Airflow 3.3) whose request reaches the approver through Callbell.

``airflow dags test`` runs the DAG; the ApprovalOperator calls the notifier, whose message lands in
the sandbox; the test then answers through the API server's HITL endpoint, as the "Required actions"
page does, and the run finishes with the approval.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS
from tests.integration.helpers import BIN, LOGICAL_DATE, Airflow

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="Human-in-the-loop operators came with Airflow 3.1"),
]

TEST_DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "callbell_hitl_approval"
TASK_ID = "approve_publication"


def test_approval_request_goes_out_over_callbell_and_the_answer_resumes_the_run(
    airflow: Airflow, airflow_api_server: str
) -> None:
    base_url = airflow_api_server
    with CallbellSandbox(status_interval=0) as callbell_sandbox:
        dag_test = subprocess.Popen(
            [str(BIN / "airflow"), "dags", "test", DAG_ID, LOGICAL_DATE],
            env={
                **airflow.env,
                "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
                "AIRFLOW_CONN_CALLBELL_DEFAULT": callbell_sandbox.connection_json,
                "AIRFLOW__API__BASE_URL": base_url,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while not callbell_sandbox.messages:
                assert dag_test.poll() is None, dag_test.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "no Callbell message from the HITL task"
                time.sleep(0.5)
            (message,) = callbell_sandbox.messages
            lines = message["body"]["content"]["text"].splitlines()
            link = lines[-1].removeprefix("Respond in Airflow: ")
            run_id = urlsplit(link).path.split("/")[4]
            assert message["body"]["to"] == "+31612345678"
            assert lines == [
                f"🙋 DAG {DAG_ID}: task {TASK_ID} needs your input (run {run_id})",
                "Publish the sales numbers for 2026-01-01?",
                f"1234 rows loaded by {DAG_ID}.",
                "Options: Approve, Reject",
                f"Respond in Airflow: {base_url}/dags/{DAG_ID}/runs/{run_id}/tasks/{TASK_ID}/required_actions"
                "?map_index=-1",
            ]
            assert run_id.startswith("manual__")

            token = requests.get(f"{base_url}/auth/token", timeout=10).json()["access_token"]
            answer = requests.patch(
                f"{base_url}/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{TASK_ID}/-1/hitlDetails",
                json={"chosen_options": ["Approve"]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            output, _ = dag_test.communicate(timeout=180)
        finally:
            if dag_test.poll() is None:
                os.killpg(dag_test.pid, signal.SIGKILL)
                dag_test.wait()
    assert dag_test.returncode == 0, output[-3000:]
    found = airflow.last_run(DAG_ID)
    assert found["state"] == "success"
    values = {(row["task_id"], row["key"]): row["value"] for row in found["xcoms"]}
    assert values[("publish", "return_value")] == "published"
    assert len(callbell_sandbox.messages) == 1  # the notifier ran once, for the request
