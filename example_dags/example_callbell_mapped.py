"""One mapped task instance per recipient: ``expand`` over numbers, ``expand_kwargs`` over messages."""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="example_callbell_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "callbell"],
):
    CallbellSendMessageOperator.partial(
        task_id="same_text_to_each",
        content={"text": "Maintenance tonight at 22:00 ({{ ds }})"},
    ).expand(to=["+31612345678", "+31687654321"])

    CallbellSendMessageOperator.partial(task_id="own_message_to_each").expand_kwargs(
        [
            {"to": "+31612345678", "content": {"text": "Your order shipped"}},
            {"to": "tg_4242", "from_": "telegram", "content": {"text": "Your order shipped"}},
        ]
    )
