"""Send a message, then wait until it is delivered, in poke mode and in deferrable mode.

``CallbellMessageStatusSensor`` returns the status it saw (XCom ``return_value``), and fails the
task with Callbell's reason when the message ends ``failed``. The poke-mode sensor holds a worker
slot while it waits, which suits a short wait; the deferrable one waits in the triggerer, which
suits waiting hours for someone to read the message. Delivery statuses exist only on WhatsApp
Business API and WhatsApp QR API channels.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator
from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor

with DAG(
    dag_id="example_callbell_delivery",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"on_call": "+31612345678"},
    tags=["example", "callbell"],
):
    send = CallbellSendMessageOperator(
        task_id="send_incident",
        to="{{ params.on_call }}",
        content={"text": "Nightly load for {{ ds }} is late; please check the warehouse."},
    )

    wait_for_delivery = CallbellMessageStatusSensor(
        task_id="wait_for_delivery",
        message_uuid=send.output,  # the uuid the send task returned
        poke_interval=5,
        timeout=timedelta(minutes=10),
    )

    wait_until_read = CallbellMessageStatusSensor(
        task_id="wait_until_read",
        message_uuid=send.output,
        target_statuses="read",
        poke_interval=30,
        timeout=timedelta(hours=4),
        deferrable=True,  # waits in the triggerer, not in a worker slot
    )

    send >> [wait_for_delivery, wait_until_read]
