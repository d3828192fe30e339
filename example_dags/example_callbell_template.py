"""Send an approved WhatsApp template, the only kind of message allowed outside the 24-hour window.

``optin_contact=True`` states that the contact agreed to receive template messages; Callbell
requires it. ``template_values`` fill the template's placeholders ``{{1}}``, ``{{2}}``, ... in order.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="example_callbell_template",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"template_uuid": "d980fb66fd5043d3ace1aa06ba044342", "customer": "Ada", "order": "1042"},
    tags=["example", "callbell"],
):
    CallbellSendMessageOperator(
        task_id="send_order_update",
        to="+31612345678",
        template_uuid="{{ params.template_uuid }}",
        optin_contact=True,
        content={"text": "{{ params.customer }}"},
        template_values=["{{ params.customer }}", "{{ params.order }}"],
    )
