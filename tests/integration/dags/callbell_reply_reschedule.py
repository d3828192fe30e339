"""A reply sensor in reschedule mode without a question uuid: answers count from its first start."""

from __future__ import annotations

from datetime import timedelta

import pendulum

from airflow_provider_callbell.sensors.callbell import CallbellReplySensor

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

with DAG(
    dag_id="callbell_reply_reschedule",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    CallbellReplySensor(
        task_id="wait_for_anything",
        to="+31612345678",
        mode="reschedule",
        poke_interval=3,
        timeout=timedelta(minutes=3),
    )
