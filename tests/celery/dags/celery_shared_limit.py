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
#: The tasks that start sending only when the test says so (see ``start_together``).
TOGETHER = (*RECIPIENTS, "report")


def barrier_keys(run_id: str) -> tuple[str, str]:
    """The Redis keys of a run's barrier: how many tasks wait at it, and the test's go."""
    return f"waiting/{run_id}", f"go/{run_id}"


def start_together(context: Any) -> None:
    """Wait until the test says go: it does once every task of :data:`TOGETHER` waits here and the
    deferred sensor polls, so that everything sends at the same time.

    A test's barrier, kept in the deployment's Redis: on a busy machine a task process takes tens of
    seconds to start, so tasks queued together may otherwise begin far apart.
    """
    import redis

    client = redis.Redis.from_url(os.environ["CALLBELL_TEST_BARRIER"])
    waiting, go = barrier_keys(context["run_id"])
    client.incr(waiting)
    deadline = time.monotonic() + 300
    while not client.exists(go) and time.monotonic() < deadline:
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
    )
    # Polls every second from the triggerer until the message is read, which the test lets happen once
    # the bulk sends are done.
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
