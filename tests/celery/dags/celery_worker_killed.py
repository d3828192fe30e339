"""One bulk send whose worker the test kills outright (SIGKILL) in the middle; the retry runs on the other
worker."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessagesOperator

MESSAGES = 3000
RECIPIENTS = [f"+3164{i:07d}" for i in range(MESSAGES)]

with DAG(
    dag_id="celery_worker_killed",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    CallbellSendMessagesOperator(
        task_id="bulk",
        recipients=RECIPIENTS,
        message={"content": {"text": "Your order ships today"}},
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
