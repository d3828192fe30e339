"""A DAG whose operator has a literal number with the 00 prefix: a DAG import error naming the task."""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="callbell_bad_operator_literal", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
):
    CallbellSendMessageOperator(task_id="tell_the_team", to="0031612345678", content={"text": "Hi"})
