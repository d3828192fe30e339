"""A pipeline that tells the on-call person how it went, with templated content.

The load step returns a row count; the send step renders it, the run date and the DAG id into the
message, and pushes the enqueued message's uuid to XCom (``return_value``) and the whole message
object under ``callbell_message``.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="example_callbell_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"on_call": "+31612345678"},
    tags=["example", "callbell"],
):

    @task
    def load() -> int:
        """Stand-in for real work: returns how many rows were loaded."""
        return 1234

    notify = CallbellSendMessageOperator(
        task_id="notify_on_call",
        to="{{ params.on_call }}",
        content={
            "text": "{{ dag.dag_id }} loaded {{ ti.xcom_pull(task_ids='load') }} rows for {{ ds }} "
            "(run {{ run_id }})"
        },
        metadata={"dag_id": "{{ dag.dag_id }}", "run_id": "{{ run_id }}"},
    )

    load() >> notify
