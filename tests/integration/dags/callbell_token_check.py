"""Three sends through three connections: clean, retried after 503s, refused with 401."""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(dag_id="callbell_token_check", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    for conn_id in ("callbell_clean", "callbell_retried", "callbell_refused"):
        CallbellSendMessageOperator(
            task_id=f"send_via_{conn_id}",
            callbell_conn_id=conn_id,
            to="+31612345678",
            content={"text": "{{ task.task_id }} for {{ ds }}"},
        )
