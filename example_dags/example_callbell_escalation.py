"""When a load fails, page the primary on-call person; without an ACK in time, page the secondary.

``page_primary`` runs only when the load failed (``trigger_rule="one_failed"``). The reply sensor
waits for an answer starting with ACK after that page; with ``soft_fail=True`` a timeout skips it
instead of failing, and the branch then pages the secondary on-call person, naming who did not
answer. On a successful load nobody is paged and the branch skips both ends.

The wait is 15 minutes; the environment variable ``CALLBELL_EXAMPLE_ACK_TIMEOUT`` (seconds) shortens
it for demos and tests. Trigger with ``{"fail_load": false}`` to see the quiet path.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator
from airflow_provider_callbell.sensors.callbell import CallbellReplySensor

ACK_TIMEOUT = timedelta(seconds=float(os.environ.get("CALLBELL_EXAMPLE_ACK_TIMEOUT", 15 * 60)))

with DAG(
    dag_id="example_callbell_escalation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"primary": "+31612345678", "secondary": "+31687654321", "fail_load": True},
    tags=["example", "callbell"],
):

    @task
    def nightly_load(**context: Any) -> int:
        """Stand-in for the real load; fails when the run's ``fail_load`` param says so."""
        if context["params"]["fail_load"]:
            raise RuntimeError("the warehouse refused the nightly load")
        return 1234

    page_primary = CallbellSendMessageOperator(
        task_id="page_primary",
        trigger_rule="one_failed",
        to="{{ params.primary }}",
        content={"text": "🚨 {{ dag.dag_id }}: the nightly load for {{ ds }} failed. Reply ACK to take it."},
    )

    wait_for_ack = CallbellReplySensor(
        task_id="wait_for_ack",
        to="{{ params.primary }}",
        after_message_uuid=page_primary.output,
        pattern=r"(?i)^ack\b",
        reprompt="Reply ACK to take the incident.",
        poke_interval=5,
        timeout=ACK_TIMEOUT,
        soft_fail=True,  # nobody answered: skip, and let the branch escalate
    )

    @task.branch(trigger_rule="none_failed")
    def escalate_or_not(**context: Any) -> list[str]:
        ti = context["ti"]
        if ti.xcom_pull(task_ids="page_primary") is None:
            return []  # the load worked: nobody was paged
        return ["acknowledged"] if ti.xcom_pull(task_ids="wait_for_ack") else ["page_secondary"]

    @task
    def acknowledged(**context: Any) -> str:
        reply = context["ti"].xcom_pull(task_ids="wait_for_ack")
        return f"{reply['from']} acknowledged at {reply['createdAt']}"

    page_secondary = CallbellSendMessageOperator(
        task_id="page_secondary",
        to="{{ params.secondary }}",
        content={
            "text": "🚨 {{ dag.dag_id }}: the nightly load for {{ ds }} failed and {{ params.primary }} "
            "did not acknowledge. Please take it."
        },
    )

    nightly_load() >> page_primary >> wait_for_ack >> escalate_or_not() >> [acknowledged(), page_secondary]
