"""A status sensor in reschedule mode whose connection points where nothing listens.

Each poke is a new process; what the sensor knows about reaching Callbell lives in Airflow's task
state store. The grace is shortened here, in the DAG file that the task's process parses, so that the
test does not wait a minute: 3 pokes and 2 s.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from airflow_provider_callbell import connectivity
from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

connectivity.NEVER_CONNECTED_SECONDS = 2.0

with DAG(
    dag_id="callbell_status_unreachable",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    CallbellMessageStatusSensor(
        task_id="wait_for_delivery",
        message_uuid="0123456789abcdef0123456789abcdef",
        mode="reschedule",
        poke_interval=1,
        timeout=timedelta(minutes=5),
    )
