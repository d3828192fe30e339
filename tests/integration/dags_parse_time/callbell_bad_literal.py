"""A DAG whose notifier has a literal national number: a DAG import error, not a broken alert later."""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="callbell_bad_literal",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    on_failure_callback=CallbellNotifier(to="0612345678"),
):
    CallbellSendMessageOperator(task_id="hello", to="+31612345678", content={"text": "Hi"})
