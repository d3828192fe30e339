"""Approve a publication from the phone: a Human-in-the-loop approval answered over WhatsApp (Airflow 3.1+).

``ApprovalOperator`` asks the question and waits; its ``CallbellNotifier`` sends the question to
the approver's phone. Beside it, ``CallbellHITLResponseOperator`` waits (in the triggerer) for the
approver's reply, maps "yes", "approve" or "1" to ``Approve`` (and "no", "reject", "2" to
``Reject``), submits it through Airflow's REST API as the ``airflow_api`` connection's user, and
confirms on the phone ("Recorded: Approve for example_callbell_hitl / approve_publication"). A reply
that is neither gets one reprompt listing the options; answering in Airflow's UI still works, and
then the bridge ends without submitting anything.

It needs two connections: ``callbell_default`` and ``airflow_api`` (the API server's base URL, with
the login and password of the Airflow user that answers), e.g.::

    airflow connections add airflow_api --conn-type http --conn-host http://127.0.0.1:8080 \\
        --conn-login hitl-bridge --conn-password '...'

On Airflow 2.x, which has no Human-in-the-loop tasks, this file defines no DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS

if AIRFLOW_V_3_1_PLUS:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import DAG, task

    from airflow_provider_callbell.operators.hitl import CallbellHITLResponseOperator

    with DAG(
        dag_id="example_callbell_hitl",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"approver": "+31612345678"},
        tags=["example", "callbell"],
    ):
        approve = ApprovalOperator(
            task_id="approve_publication",
            subject="Publish the sales numbers for {{ ds }}?",
            body="Reply YES or NO.",
            notifiers=[CallbellNotifier(to="{{ params.approver }}")],
        )

        # Runs beside the approval (no dependency between the two): it answers it.
        answer_from_phone = CallbellHITLResponseOperator(
            task_id="answer_from_phone",
            hitl_task_id="approve_publication",
            to="{{ params.approver }}",
            poke_interval=5,
            timeout=timedelta(hours=4),
        )

        @task
        def publish() -> str:
            return "published"

        approve >> publish()
