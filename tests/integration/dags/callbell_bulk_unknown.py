"""A bulk send in which Callbell enqueues one message but answers 500: its fate is unknown to the task."""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessagesOperator

with DAG(
    dag_id="callbell_bulk_unknown",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    CallbellSendMessagesOperator(
        task_id="send",
        recipients=[f"+3161000{i:04d}" for i in range(4)],
        message={"content": {"text": "Hi from try {{ ti.try_number }}"}},
        retries=1,
        retry_delay=timedelta(0),
    )
