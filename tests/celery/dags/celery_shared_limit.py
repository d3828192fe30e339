"""Two bulk sends on two Celery workers at once, with a deferred status sensor and a notifier beside them:
everything this DAG sends draws on the one account's 300 requests per second."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.operators.callbell import (
    CallbellSendMessageOperator,
    CallbellSendMessagesOperator,
)
from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor

#: Messages per bulk task: about 20 s for both at the account's limit.
MESSAGES_PER_TASK = 3000
#: Recipients of each bulk task, none shared: a message stored twice shows as a recipient seen twice.
RECIPIENTS = {
    "bulk_a": [f"+3162{i:07d}" for i in range(MESSAGES_PER_TASK)],
    "bulk_b": [f"+3163{i:07d}" for i in range(MESSAGES_PER_TASK)],
}
ON_CALL = "+31612345678"
#: The tasks that start together (see ``start_together``).
TOGETHER = (*RECIPIENTS, "send_incident", "report")


def start_together(context: Any) -> None:
    """Wait until every task of :data:`TOGETHER` is running, so that they send at the same time.

    A test's barrier, kept in the deployment's Redis: on a busy machine a task process takes tens of
    seconds to start, so two tasks queued together may otherwise begin far apart.
    """
    import redis

    client = redis.Redis.from_url(os.environ["CALLBELL_TEST_BARRIER"])
    key = f"start_together/{context['run_id']}"
    client.incr(key)
    deadline = time.monotonic() + 300
    while int(client.get(key) or 0) < len(TOGETHER) and time.monotonic() < deadline:
        time.sleep(0.02)


with DAG(
    dag_id="celery_shared_limit",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=8,
):
    for task_id, recipients in RECIPIENTS.items():
        CallbellSendMessagesOperator(
            task_id=task_id,
            recipients=recipients,
            message={"content": {"text": "Your order ships today"}},
            queue=task_id.replace("bulk", "worker"),  # bulk_a on worker_a, bulk_b on worker_b
            pre_execute=start_together,
        )

    send = CallbellSendMessageOperator(
        task_id="send_incident",
        to=ON_CALL,
        content={"text": "Nightly load is late"},
        pre_execute=start_together,
    )
    # Polls every second from the triggerer until the message is read, while the bulk sends run.
    send >> CallbellMessageStatusSensor(
        task_id="wait_until_read",
        message_uuid=send.output,
        target_statuses="read",
        poke_interval=1,
        timeout=timedelta(minutes=5),
        deferrable=True,
    )

    @task(
        pre_execute=start_together,
        on_success_callback=CallbellNotifier(to=ON_CALL, content={"text": "Report {{ ti.task_id }} is done"}),
    )
    def report() -> None:
        time.sleep(5)  # ends, and notifies, while the bulk sends run

    report()
