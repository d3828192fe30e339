"""A bulk send whose first try fails part-way, so that its retry must skip what the first try sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.operators.callbell import CallbellSendMessagesOperator
from airflow_provider_callbell.progress import progress_key
from airflow_provider_callbell.version_compat import Variable

with DAG(
    dag_id="callbell_bulk_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    send = CallbellSendMessagesOperator(
        task_id="send",
        recipients=[{"to": f"+3161000{i:04d}", "name": f"R{i}"} for i in range(12)],
        message={"content": {"text": "Hi {{ recipient.name }} from try {{ ti.try_number }}"}},
        retries=1,
        retry_delay=timedelta(0),
    )

    @task
    def progress_deleted(ti: Any = None) -> bool:
        """Whether the send's progress Variable is gone, as it should be once every message was sent."""
        # The default goes by position: Airflow 3 names it ``default``, Airflow 2 ``default_var``.
        return Variable.get(progress_key(ti.dag_id, "send", ti.run_id, -1), None) is None

    send >> progress_deleted()
