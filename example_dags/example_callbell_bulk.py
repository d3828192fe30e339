"""Bulk sends: a list of messages from one task, and a large audience fanned out under a pool.

``send_list`` sends complete messages from one task, concurrently at up to 285 requests per second
(95% of Callbell's 300 per account).

``send_chunk`` is the way past one task: the audience is split into chunks, one mapped task instance
per chunk, so that chunks run on every worker of a distributed executor (Celery, Kubernetes) and a
failed chunk is retried alone. The pool ``callbell`` caps how many chunks send at once, and each
sends at most the account's limit divided by the pool's slots, so that together they stay under it.
Create the pool once (every DAG that sends through the same Callbell account should use it)::

    airflow pools set callbell 4 "Callbell sends: 4 at once, 71 messages/s each"

Trigger with ``{"audience_size": 100000, "chunk_size": 10000}`` for a real-sized run; the defaults
are tiny so that the example runs in seconds.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.operators.callbell import CallbellSendMessagesOperator

#: 95% of Callbell's 300 requests per second per account.
ACCOUNT_MAX_RPS = 285
#: The slots of the ``callbell`` pool: how many chunks send at the same time.
POOL_SLOTS = 4

with DAG(
    dag_id="example_callbell_bulk",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"audience_size": 30, "chunk_size": 10},
    tags=["example", "callbell"],
):
    CallbellSendMessagesOperator(
        task_id="send_list",
        messages=[
            {"to": "+31612345678", "content": {"text": "Stock report for {{ ds }} is ready"}},
            {"to": "+31687654321", "content": {"text": "Stock report for {{ ds }} is ready"}},
            {"to": "tg_4242", "from": "telegram", "content": {"text": "Stock report for {{ ds }} is ready"}},
        ],
    )

    @task
    def load_audience(params: dict[str, int]) -> list[dict[str, str]]:
        """Stand-in for a query: who to tell, with the values their message needs."""
        return [
            {"to": f"+3162{i:07d}", "name": f"Customer {i}", "order": str(100_000 + i)}
            for i in range(params["audience_size"])
        ]

    @task
    def chunk(audience: list[dict[str, str]], params: dict[str, int]) -> list[list[dict[str, str]]]:
        size = params["chunk_size"]
        return [audience[start : start + size] for start in range(0, len(audience), size)]

    CallbellSendMessagesOperator.partial(
        task_id="send_chunk",
        message={"content": {"text": "Hi {{ recipient.name }}, order {{ recipient.order }} has shipped"}},
        pool="callbell",
        max_rps=ACCOUNT_MAX_RPS / POOL_SLOTS,
        retries=2,
    ).expand(recipients=chunk(load_audience()))
