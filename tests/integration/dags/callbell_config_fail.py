"""Sends through connections that cannot work: each task must fail at its first try, not be retried.

Not an example: it fails on purpose. A configuration error fails the same way at every try, so the
provider raises it as an ``AirflowFailException``; the retry callback would send a message if Airflow
retried, the failure callback sends one when the task fails for good. The notifier itself sends
through the default connection, which the test points at its sandbox.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

on_call = CallbellNotifier(to="+31612345678")

with DAG(
    dag_id="callbell_config_fail",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    for conn_id in ("callbell_missing", "callbell_schemeless"):
        CallbellSendMessageOperator(
            task_id=f"send_via_{conn_id}",
            callbell_conn_id=conn_id,
            to="+31612345678",
            content={"text": "never sent"},
            retries=2,
            retry_delay=timedelta(0),
            on_retry_callback=on_call,
            on_failure_callback=on_call,
        )
