"""Send, wait for delivery in poke and in deferrable mode, then fail with notifiers on the callbacks.

Not an example: it fails on purpose, so that a test can check what the failure callbacks send. The
intervals are short because the test's sandbox moves a message one status step every 0.2 s.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator
from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor

on_call = CallbellNotifier(to="{{ params.on_call }}", quiet_retries=True)
every_outcome = CallbellNotifier(to="{{ params.on_call }}")

with DAG(
    dag_id="callbell_send_wait_fail",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"on_call": "+31612345678"},
    on_failure_callback=every_outcome,
):
    send = CallbellSendMessageOperator(
        task_id="send", to="{{ params.on_call }}", content={"text": "Report for {{ ds }} is ready"}
    )
    wait_poke = CallbellMessageStatusSensor(
        task_id="wait_poke", message_uuid=send.output, poke_interval=0.1, timeout=30
    )
    wait_deferred = CallbellMessageStatusSensor(
        task_id="wait_deferred",
        message_uuid="{{ ti.xcom_pull(task_ids='send') }}",
        target_statuses="read",
        poke_interval=0.1,
        timeout=30,
        deferrable=True,
    )

    @task(retries=1, retry_delay=timedelta(0), on_retry_callback=on_call, on_failure_callback=on_call)
    def check_rows() -> None:
        raise ValueError("12 rows without a customer id")

    # Bad input fails at once: no retry (the retry callback would send), one failure message.
    bad_number = CallbellSendMessageOperator(
        task_id="bad_number",
        to="{{ params.on_call }}-not-a-number",
        content={"text": "never sent"},
        retries=2,
        retry_delay=timedelta(0),
        trigger_rule="all_done",
        on_retry_callback=every_outcome,
        on_failure_callback=every_outcome,
    )

    send >> wait_poke >> wait_deferred >> check_rows() >> bad_number
