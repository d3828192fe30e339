"""A Human-in-the-loop approval whose request goes out over Callbell (Airflow 3.1+; no DAG on 2.x)."""

from __future__ import annotations

import pendulum

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS

if AIRFLOW_V_3_1_PLUS:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import DAG, task

    with DAG(
        dag_id="callbell_hitl_approval",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"approver": "+31612345678"},
    ):
        approve = ApprovalOperator(
            task_id="approve_publication",
            subject="Publish the sales numbers for {{ ds }}?",
            body="1234 rows loaded by {{ dag.dag_id }}.",
            notifiers=[CallbellNotifier(to="{{ params.approver }}")],
        )

        @task
        def publish() -> str:
            return "published"

        approve >> publish()
