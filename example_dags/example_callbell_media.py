"""Send an image with a caption, and a PDF report, to the same recipient."""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator

with DAG(
    dag_id="example_callbell_media",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "callbell"],
):
    chart = CallbellSendMessageOperator(
        task_id="send_chart",
        to="+31612345678",
        type="image",
        content={"url": "https://example.com/charts/{{ ds }}.png", "text": "Daily sales for {{ ds }}"},
    )
    report = CallbellSendMessageOperator(
        task_id="send_report",
        to="+31612345678",
        type="document",
        content={"url": "https://example.com/reports/{{ ds }}.pdf"},
    )
    chart >> report
