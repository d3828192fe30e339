"""A pipeline that tells the on-call person when it breaks, and again when it is fixed.

One notifier sits on both DAG-level callbacks. With ``only_on_change`` it stays quiet while nothing
changes: the first failed run sends "❌ DAG ... failed ...", the next failures send nothing, and the
first successful run after them sends "✅ DAG ... succeeded ...". What it last saw is kept in the
Airflow Variable ``callbell_notifier.example_callbell_dag_callbacks``.

DAG-level callbacks run in the scheduler's DAG processor once the run is finished, not on a worker.
Trigger the DAG with ``{"fail": true}`` to see the failure path.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.notifications.callbell import CallbellNotifier

notify_on_call = CallbellNotifier(to="{{ params.on_call }}", only_on_change=True)

with DAG(
    dag_id="example_callbell_dag_callbacks",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"on_call": "+31612345678", "fail": False},
    on_success_callback=notify_on_call,
    on_failure_callback=notify_on_call,
    tags=["example", "callbell"],
):

    @task
    def extract() -> int:
        """Stand-in for real work: returns how many rows were read."""
        return 1234

    @task
    def load(rows: int, params: dict | None = None) -> None:
        if params and params["fail"]:
            raise ValueError(f"{rows} rows read, but the warehouse refused them")

    load(extract())
