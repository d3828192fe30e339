"""The notifier and the sensor in a real Airflow (``airflow dags test``) against the local sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS

pytestmark = pytest.mark.integration

TEST_DAGS = Path(__file__).resolve().parent / "dags"


def test_send_wait_poke_and_deferred_then_fail_with_notifications(airflow, callbell_sandbox):
    result = airflow.dags_test(
        "callbell_send_wait_fail", callbell_sandbox, AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS)
    )
    assert result.returncode != 0, "the DAG fails on purpose"
    assert result.state == "failed"
    sent, task_failure, bad_input, dag_failure = (
        m["body"]["content"]["text"] for m in callbell_sandbox.messages
    )
    run = result.run_id

    assert sent == "Report for 2026-01-01 is ready"
    uuid = result.xcom("send")
    assert uuid == callbell_sandbox.messages[0]["uuid"]
    # The sensors' results; the deferred one really went through the trigger. The sandbox moves the
    # message one step every 0.2 s, so on a busy machine the poke sensor may first see it past
    # "delivered": it then returns the status it saw, "read", as documented.
    assert result.xcom("wait_poke") in {"delivered", "read"}
    assert result.xcom("wait_deferred") == "read"
    assert "[DAG TEST] running trigger in line" in result.output
    assert f"Callbell message {uuid} is read" in result.output

    # on_retry_callback stayed quiet (quiet_retries); on_failure_callback sent the summary.
    quoted_run = run.replace(":", "%3A").replace("+", "%2B")
    log_path = (  # the task instance's own log_url, which each Airflow line spells its way
        f"/dags/callbell_send_wait_fail/runs/{quoted_run}/tasks/check_rows?try_number=2"
        if AIRFLOW_V_3_0_PLUS
        else f"/dags/callbell_send_wait_fail/grid?dag_run_id={quoted_run}&task_id=check_rows"
        "&base_date=2026-01-01T00%3A00%3A00.000000%2B0000&tab=logs"
    )
    assert task_failure.splitlines() == [
        f"❌ DAG callbell_send_wait_fail: task check_rows failed in run {run} (try 2 of 2)",
        "> ValueError: 12 rows without a customer id",
        f"Log: http://localhost:8080{log_path}",
    ]
    assert "No Callbell notification for callbell_send_wait_fail.check_rows: Airflow will retry" in (
        result.output
    )
    # Invalid input failed its first try for good (CallbellValidationError is an AirflowFailException):
    # no retry callback sent anything, though the task had retries left.
    assert bad_input.splitlines()[:2] == [
        f"❌ DAG callbell_send_wait_fail: task bad_number failed in run {run} (try 1 of 3)",
        "> CallbellValidationError: to must be a phone number in international format for channel "
        "'whatsapp': '+', the country code and the number, 6 to 15 digits 0-9 (e.g. '+31612345678'), "
        "got '+31612345678-not-a-number'",
    ]
    # `dags test` runs DAG-level callbacks too, in-process (on 3.3 with a serialized DAG), on both lines.
    # Airflow 3 names the task that failed last; Airflow 2.x the run's last task instance in database
    # order, which the notifier names only when it failed.
    failed_tasks = ["bad_number"] if AIRFLOW_V_3_0_PLUS else ["bad_number", "check_rows"]
    assert dag_failure.splitlines()[0] in [
        f"❌ DAG callbell_send_wait_fail failed in run {run} (task_failure; failed task: {task})"
        for task in failed_tasks
    ]


def test_example_delivery(airflow):
    # status_interval=0: the message is read at once, so the sensors never sleep a poke interval.
    with CallbellSandbox(status_interval=0) as callbell_sandbox:
        result = airflow.dags_test("example_callbell_delivery", callbell_sandbox)
    assert result.returncode == 0, result.output[-3000:]
    (message,) = callbell_sandbox.messages
    assert (
        message["body"]["content"]["text"]
        == "Nightly load for 2026-01-01 is late; please check the warehouse."
    )
    assert result.xcom("send_incident") == message["uuid"]
    assert result.xcom("wait_for_delivery") == "read"
    assert result.xcom("wait_until_read") == "read"
    assert "[DAG TEST] running trigger in line" in result.output
