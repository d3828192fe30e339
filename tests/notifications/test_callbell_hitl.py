"""CallbellNotifier in ``notifiers=`` of the standard provider's Human-in-the-loop operators (Airflow 3.1+)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest

from airflow_provider_callbell.callback_events import CallbackEvent
from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS
from tests.helpers import SEND_URL, UUID

pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_1_PLUS, reason="Human-in-the-loop operators came with Airflow 3.1"
)

RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def hitl_context(task: Any, state: str = "running", **extra: Any) -> dict[str, Any]:
    ti = mock.Mock(
        dag_id="publish",
        run_id=RUN_ID,
        task_id=task.task_id,
        map_index=-1,
        state=state,
        try_number=1,
        max_tries=0,
    )
    ti.log_url = None
    return {"task": task, "ti": ti, "task_instance": ti, "run_id": RUN_ID, **extra}


def approval(**kwargs: Any) -> Any:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    return ApprovalOperator(task_id="approve", subject="Publish the sales numbers?", **kwargs)


def sent_text(requests_mock: Any) -> str:
    (request,) = requests_mock.request_history
    return str(request.json()["content"]["text"])


class TestHITLRequest:
    def test_approval_default_text_has_subject_body_options_and_link(
        self, callbell_conn: None, requests_mock: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com")
        requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        task = approval(body="1234 rows, 3 regions.")
        CallbellNotifier(to="+31612345678").notify(hitl_context(task))
        assert sent_text(requests_mock).splitlines() == [
            f"🙋 DAG publish: task approve needs your input (run {RUN_ID})",
            "Publish the sales numbers?",
            "1234 rows, 3 regions.",
            "Options: Approve, Reject",
            f"Respond in Airflow: https://airflow.example.com/dags/publish/runs/{RUN_ID}/tasks/approve/"
            "required_actions?map_index=-1",
        ]

    def test_multiple_choice_with_defaults_and_timeout(self) -> None:
        from airflow.providers.standard.operators.hitl import HITLOperator

        task = HITLOperator(
            task_id="pick",
            subject="Which regions?",
            options=["EU", "US", "APAC"],
            multiple=True,
            defaults=["EU"],
            response_timeout=timedelta(hours=1),
        )
        task.hitl_summary_extra["timeout_datetime"] = "2026-01-01T01:00:00+00:00"  # execute() sets it
        with mock.patch("airflow.configuration.conf.get", return_value=None):
            event = CallbackEvent.from_context(hitl_context(task))
        assert event.level == "hitl"
        assert event.summary().splitlines()[1:] == [
            "Which regions?",
            "Options (one or more): EU, US, APAC",
            "Without an answer by 2026-01-01T01:00:00+00:00: EU",
        ]

    @pytest.mark.parametrize(
        "extra",
        [
            pytest.param({"state": "failed", "exception": RuntimeError("boom")}, id="failure-callback"),
            pytest.param({"state": "success"}, id="success-callback"),
        ],
    )
    def test_the_hitl_task_own_callbacks_keep_the_outcome_summary(self, extra: dict[str, Any]) -> None:
        state = extra.pop("state")
        event = CallbackEvent.from_context(hitl_context(approval(), state=state, **extra))
        assert event.level == "task"
        assert "needs your input" not in event.summary()

    def test_other_tasks_are_not_hitl(self) -> None:
        task = mock.Mock(spec=["task_id"], task_id="load")
        assert CallbackEvent.from_context(hitl_context(task)).level == "task"

    def test_given_content_wins(self, callbell_conn: None, requests_mock: Any) -> None:
        requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellNotifier(to="+31612345678", content={"text": "Approval needed"}).notify(
            hitl_context(approval())
        )
        assert sent_text(requests_mock) == "Approval needed"
