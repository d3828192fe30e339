"""Progress Variables that cannot be trusted, and a single message whose first try got no clear answer.

``plant`` writes, through the real task SDK, a Variable that is not JSON for ``send_junk`` and one with
the right recipients digest but a wrong shape for ``send_wrong_shape``: both must send nothing and
fail with ``CallbellProgressError``. ``send_one``'s first try gets a ``500`` after the sandbox stored
the message; its retry must find it in the conversation and send nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_callbell.bulk import recipients_digest
from airflow_provider_callbell.operators.callbell import (
    CallbellSendMessageOperator,
    CallbellSendMessagesOperator,
)
from airflow_provider_callbell.progress import progress_key
from airflow_provider_callbell.version_compat import Variable

RECIPIENTS = ["+31610000001", "+31610000002"]

with DAG(
    dag_id="callbell_state_fail_closed",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task
    def plant(ti: Any = None) -> None:
        digest = recipients_digest({"to": to, "from": "whatsapp"} for to in RECIPIENTS)
        wrong_shape = {"recipients_digest": digest, "total": 2, "sent": [[0]]}
        for task_id, value in (("send_junk", "{not json"), ("send_wrong_shape", json.dumps(wrong_shape))):
            Variable.set(progress_key(ti.dag_id, task_id, ti.run_id, -1), value)

    junk = [
        CallbellSendMessagesOperator(
            task_id=task_id, recipients=RECIPIENTS, message={"content": {"text": "Hi"}}, retries=0
        )
        for task_id in ("send_junk", "send_wrong_shape")
    ]
    plant() >> junk

    CallbellSendMessageOperator(
        task_id="send_one",
        to="+31610000077",
        content={"text": "Your order shipped"},
        retries=1,
        retry_delay=timedelta(0),
    )
