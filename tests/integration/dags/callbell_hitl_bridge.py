"""A Human-in-the-loop choice among several options, with assigned users, answered from the phone.

``choose_channels`` lets only ``alice`` and ``hitl-bridge`` (the service account of the
``airflow_api`` connection) answer; ``answer_as_alice`` holds a phone mapped to alice, and
``answer_as_mallory`` a phone mapped to a user outside ``assigned_users``, refused before it waits.
"""

from __future__ import annotations

import pendulum

from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS

ALICE_PHONE = "+31633333333"
MALLORY_PHONE = "+31644444444"

if AIRFLOW_V_3_1_PLUS:
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import DAG, task

    from airflow_provider_callbell.operators.hitl import CallbellHITLResponseOperator

    with DAG(
        dag_id="callbell_hitl_choose",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
    ):
        choose = HITLOperator(
            task_id="choose_channels",
            subject="Where should the report go?",
            options=["Email", "SMS", "Slack"],
            multiple=True,
            assigned_users=[{"id": "alice", "name": "alice"}, {"id": "hitl-bridge", "name": "hitl-bridge"}],
            notifiers=[CallbellNotifier(to=ALICE_PHONE)],
        )
        CallbellHITLResponseOperator(
            task_id="answer_as_alice",
            hitl_task_id="choose_channels",
            to=ALICE_PHONE,
            user_ids={ALICE_PHONE: "alice"},
            settle_seconds=5,
            poke_interval=2,
        )
        CallbellHITLResponseOperator(
            task_id="answer_as_mallory",
            hitl_task_id="choose_channels",
            to=MALLORY_PHONE,
            user_ids={MALLORY_PHONE: "mallory"},
            poke_interval=2,
        )

        @task
        def announce(choice: dict) -> list[str]:
            return list(choice["chosen_options"])

        announce(choose.output)
