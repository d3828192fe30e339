"""Ask a person for approval over WhatsApp, wait for YES or NO, and branch on the answer.

``CallbellReplySensor`` waits for an answer from ``to`` that came after the question (the send
task's uuid, ``ask.output``), accepts ``yes`` or ``no`` whatever the case and punctuation ("Yes!"),
answers anything else once with the ``reprompt``, and returns ``{"text", "choice", "from",
"createdAt"}``. The branch reads ``choice``. If nobody answers within the ``timeout`` the sensor
fails (use ``soft_fail=True`` to skip instead).

The sensor waits in a worker slot (poke mode) unless Airflow's ``[operators] default_deferrable``
is on or ``deferrable=True`` is passed: then it waits in the triggerer, which suits waiting hours.
Try it against the sandbox with ``python -m airflow_provider_callbell.sandbox --auto-reply YES
--auto-reply-delay 5``.
"""

from __future__ import annotations

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

with DAG(
    dag_id="example_callbell_approval",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"approver": "+31612345678"},
    tags=["example", "callbell"],
):
    ask = CallbellSendMessageOperator(
        task_id="ask_approval",
        to="{{ params.approver }}",
        content={"text": "Publish the sales numbers for {{ ds }}? Reply YES or NO."},
    )

    answer = CallbellReplySensor(
        task_id="wait_for_answer",
        to="{{ params.approver }}",
        after_message_uuid=ask.output,  # only answers to this question count
        choices=["yes", "no"],
        reprompt="Sorry, I did not get that: please reply YES or NO.",
        poke_interval=5,
        timeout=timedelta(hours=2),
    )

    @task.branch
    def decide(reply: dict[str, Any]) -> str:
        return "publish" if reply["choice"] == "yes" else "hold_back"

    @task
    def publish(**context: Any) -> str:
        """Stand-in for the costly step that needed approval."""
        return f"published the numbers for {context['ds']}"

    @task
    def hold_back(reply: dict[str, Any]) -> str:
        return f"held back: {reply['from']} answered {reply['text']!r} at {reply['createdAt']}"

    decide(answer.output) >> [publish(), hold_back(answer.output)]
