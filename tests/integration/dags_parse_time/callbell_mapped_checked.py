"""Mapped sends over an upstream task's numbers: literals parse, each expanded value is checked when
its task instance runs, and a wrong one fails that instance alone, without retries."""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="callbell_mapped_checked",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"retries": 2},
):

    @task
    def numbers() -> list[str]:
        return ["+31612345678", "0612345678"]

    CallbellSendMessageOperator.partial(
        task_id="send_each", content={"text": "Run {{ ds }}"}, metadata={"source": "mapped"}
    ).expand(to=numbers())
