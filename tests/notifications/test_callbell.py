from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from airflow_provider_callbell import callback_events
from airflow_provider_callbell.callback_events import CallbackEvent
from airflow_provider_callbell.exceptions import CallbellAPIError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.notifications import callbell as notifications
from airflow_provider_callbell.notifications.callbell import (
    STATE_VARIABLE_PREFIX,
    CallbellNotifier,
    send_callbell_notification,
)
from airflow_provider_callbell.operators.callbell import MESSAGE_FIELDS
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS
from tests.compat import DAG, TaskInstanceState, modules_added_by
from tests.helpers import SEND_URL, UUID, set_connection
from tests.notifications.helpers import LOG_URL, task_context, texts


def dag_context(reason: str = "success", with_last_ti: bool = True) -> dict[str, Any]:
    """What a DAG-level callback receives: the last relevant task instance's context and a reason."""
    context = task_context("failed" if reason != "success" else "success") if with_last_ti else {}
    context.pop("exception", None)
    return {**context, "dag": DAG("etl", schedule=None), "run_id": "manual__1", "reason": reason}


class FakeVariables:
    """Airflow Variables as a dict of JSON strings, with the ``airflow.sdk.Variable`` class API."""

    def __init__(self) -> None:
        self.store: dict[str, str] = {}
        self.descriptions: dict[str, str | None] = {}

    def get(self, key: str, default: Any = None, deserialize_json: bool = False) -> Any:
        if key not in self.store:
            return default
        return json.loads(self.store[key]) if deserialize_json else self.store[key]

    def set(self, key: str, value: Any, description: str | None = None, serialize_json: bool = False) -> None:
        self.store[key] = json.dumps(value) if serialize_json else value
        self.descriptions[key] = description

    def value(self, key: str) -> Any:
        return json.loads(self.store[key])


@pytest.fixture
def variables(monkeypatch):
    fake = FakeVariables()
    monkeypatch.setattr(notifications, "Variable", fake)
    return fake


@pytest.fixture
def clock(monkeypatch):
    """A controllable ``time.time()`` for the notifier."""
    now = [1_900_000_000.0]
    monkeypatch.setattr(notifications.time, "time", lambda: now[0])
    return now


class TestFields:
    def test_every_message_field_is_templated(self):
        assert tuple(CallbellNotifier.template_fields) == (*MESSAGE_FIELDS, "dedupe_key")
        assert set(MESSAGE_FIELDS) <= set(inspect.signature(CallbellNotifier.__init__).parameters)

    def test_function_style_alias(self):
        assert send_callbell_notification is CallbellNotifier


class TestRendering:
    def test_fields_rendered_with_the_callbacks_context(self, send_ok):
        notifier = CallbellNotifier(
            to="{{ params.on_call }}",
            content={"text": "{{ dag.dag_id }}.{{ ti.task_id }} is {{ ti.state }} in {{ run_id }}"},
            metadata={"run_id": "{{ run_id }}"},
        )
        notifier(task_context())
        body = send_ok.last_request.json()
        assert body == {
            "to": "+31612345678",
            "from": "whatsapp",
            "type": "text",
            "content": {"text": "etl.load is failed in manual__1"},
            "metadata": {"run_id": "manual__1"},
        }

    def test_one_notifier_serves_many_callbacks(self, send_ok):
        # One parsed DAG runs several callbacks (a DAG processor batch, `airflow dags test`): each must
        # be rendered from its own context, not from the first one's.
        notifier = CallbellNotifier(to="+31612345678", content={"text": "{{ ti.task_id }} {{ ti.state }}"})
        notifier(task_context("failed", task_id="load"))
        notifier(task_context("success", task_id="report"))
        assert texts(send_ok) == ["load failed", "report success"]
        assert notifier.content == {"text": "{{ ti.task_id }} {{ ti.state }}"}

    def test_renders_with_a_serialized_dag_in_the_context(self, send_ok):
        # `airflow dags test` hands DAG-level callbacks the scheduler's SerializedDAG, which has no
        # get_template_env(); BaseNotifier alone fails there.
        context = dag_context("task_failure")
        context["dag"] = SimpleNamespace(dag_id="etl", render_template_as_native_obj=False)
        CallbellNotifier(to="{{ params.on_call }}", content={"text": "{{ dag.dag_id }} {{ reason }}"})(
            context
        )
        assert texts(send_ok) == ["etl task_failure"]

    def test_summary_fills_a_templates_placeholder(self, send_ok):
        CallbellNotifier(to="+31612345678", template_uuid="tmpl-1", optin_contact=True)(task_context())
        body = send_ok.last_request.json()
        assert body["template_uuid"] == "tmpl-1"
        assert body["content"]["text"].startswith("❌ DAG etl: task load failed")

    def test_uses_its_connection(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, "callbell_ops", extra={"from": "telegram"})
        adapter = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellNotifier(to="tg_4242", callbell_conn_id="callbell_ops")(task_context())
        assert adapter.last_request.json()["from"] == "telegram"


class TestDefaultSummary:
    @pytest.mark.parametrize(
        ("context", "expected"),
        [
            pytest.param(
                task_context(TaskInstanceState.FAILED),
                "❌ DAG etl: task load failed in run manual__1 (try 3 of 3)\n"
                f"> ValueError: 12 rows without a customer id\nLog: {LOG_URL}",
                id="task-failed-last-try",
            ),
            pytest.param(
                task_context("up_for_retry", try_number=1),
                "🔁 DAG etl: task load failed and will be retried in run manual__1 (try 1 of 3)\n"
                f"> ValueError: 12 rows without a customer id\nLog: {LOG_URL}",
                id="task-retry",
            ),
            pytest.param(
                task_context("success", try_number=1, max_tries=0),
                f"✅ DAG etl: task load succeeded in run manual__1\nLog: {LOG_URL}",
                id="task-success-no-retries",
            ),
            pytest.param(
                task_context("skipped", map_index=2, max_tries=0, log_url=None),
                "⏭️ DAG etl: task load[2] was skipped in run manual__1",
                id="mapped-task-skipped",
            ),
            pytest.param(
                task_context("running", max_tries=0, log_url=None),
                "🔔 DAG etl: task load is running in run manual__1",
                id="task-other-state",
            ),
            pytest.param(dag_context("success"), "✅ DAG etl succeeded in run manual__1", id="dag-success"),
            pytest.param(
                dag_context("task_failure"),
                f"❌ DAG etl failed in run manual__1 (task_failure; failed task: load)\nLog: {LOG_URL}",
                id="dag-failure",
            ),
            pytest.param(
                {**dag_context("task_failure"), "ti": task_context("success")["ti"]},
                "❌ DAG etl failed in run manual__1 (task_failure)",
                id="dag-failure-with-a-task-that-did-not-fail",  # Airflow 2.x: the run's last task
            ),
            pytest.param(
                dag_context("timed_out", with_last_ti=False),
                "❌ DAG etl failed in run manual__1 (timed_out)",
                id="dag-failure-without-task",
            ),
            pytest.param(
                {
                    "dag_run": {"dag_id": "etl", "dag_run_id": "scheduled__2", "state": "running"},
                    "deadline": {"id": "d1", "deadline_time": "2026-01-01T06:00:00+00:00"},
                },
                "⏰ DAG etl missed its deadline (2026-01-01T06:00:00+00:00) in run scheduled__2",
                id="deadline-alert",
            ),
        ],
    )
    def test_says_what_happened(self, context, expected):
        assert CallbackEvent.from_context(context).summary() == expected

    @pytest.mark.parametrize(
        ("airflow_3_2_plus", "reason", "names_the_task"),
        [(True, "task_failure", True), (False, "task_failure", False), (True, "timed_out", False)],
    )
    def test_dag_failure_names_a_task_without_state_only_when_airflow_handed_the_failed_one(
        self, monkeypatch, airflow_3_2_plus, reason, names_the_task
    ):
        # Airflow 3's task instance carries no state: 3.2+ hands the one that failed the run, 3.0-3.1
        # the run's last one, and a timed-out run's last task did not fail it.
        monkeypatch.setattr(callback_events, "AIRFLOW_V_3_2_PLUS", airflow_3_2_plus)
        summary = CallbackEvent.from_context(
            {**dag_context(reason), "ti": task_context(None)["ti"]}
        ).summary()
        expected = f"❌ DAG etl failed in run manual__1 ({reason}; failed task: load)\nLog: {LOG_URL}"
        assert summary == (expected if names_the_task else f"❌ DAG etl failed in run manual__1 ({reason})")

    def test_sent_when_no_content(self, send_ok):
        CallbellNotifier(to="+31612345678")(task_context())
        (text,) = texts(send_ok)
        assert text.startswith("❌ DAG etl: task load failed in run manual__1 (try 3 of 3)\n")

    def test_long_error_is_cut_and_the_log_link_kept(self):
        context = task_context()
        context["exception"] = RuntimeError("x" * 10_000)
        text = CallbackEvent.from_context(context).summary()
        assert len(text) == 4096
        assert text.endswith(f"…\nLog: {LOG_URL}")
        assert text.startswith(
            "❌ DAG etl: task load failed in run manual__1 (try 3 of 3)\n> RuntimeError: xxx"
        )

    def test_anything_too_long_is_cut_with_an_ellipsis_before_the_link(self):
        text = CallbackEvent.from_context(task_context("success", run_id="r" * 5000)).summary()
        assert len(text) == 4096
        assert text.endswith(f"r…\nLog: {LOG_URL}")

    def test_short_text_is_not_touched(self):
        text = CallbackEvent.from_context(task_context()).summary()
        assert len(text) < 300
        assert "…" not in text


class TestQuietRetries:
    def test_no_message_while_airflow_will_retry(self, send_ok):
        notifier = CallbellNotifier(to="+31612345678", quiet_retries=True)
        notifier(task_context("up_for_retry", try_number=1))
        notifier(task_context("up_for_retry", try_number=2))
        assert send_ok.call_count == 0
        notifier(task_context("failed", try_number=3))
        assert [text.splitlines()[0] for text in texts(send_ok)] == [
            "❌ DAG etl: task load failed in run manual__1 (try 3 of 3)"
        ]

    def test_retries_are_sent_by_default(self, send_ok):
        CallbellNotifier(to="+31612345678")(task_context("up_for_retry", try_number=1))
        assert send_ok.call_count == 1


class TestOnlyOnChange:
    def test_broken_then_recovered(self, send_ok, variables):
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True)
        for state in ["success", "success", "failed", "failed", "success", "success", "failed"]:
            notifier(task_context(state, max_tries=0))
        assert [text.splitlines()[0] for text in texts(send_ok)] == [
            "❌ DAG etl: task load failed in run manual__1",
            "✅ DAG etl: task load succeeded in run manual__1",
            "❌ DAG etl: task load failed in run manual__1",
        ]
        key = f"{STATE_VARIABLE_PREFIX}etl.load"
        assert variables.value(key) == {
            "health": "failing",
            "notified_at": mock.ANY,
            "run_id": "manual__1",
        }
        assert "safe to delete" in variables.descriptions[key]

    def test_first_failure_is_news(self, send_ok, variables):
        CallbellNotifier(to="+31612345678", only_on_change=True)(task_context("failed"))
        assert send_ok.call_count == 1

    def test_dag_level_key_is_the_dag(self, send_ok, variables):
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True)
        notifier(dag_context("task_failure"))
        notifier(dag_context("task_failure"))
        notifier(dag_context("success"))
        assert [text.splitlines()[0] for text in texts(send_ok)] == [
            "❌ DAG etl failed in run manual__1 (task_failure; failed task: load)",
            "✅ DAG etl succeeded in run manual__1",
        ]
        assert set(variables.store) == {f"{STATE_VARIABLE_PREFIX}etl"}

    def test_each_mapped_task_instance_has_its_key(self, send_ok, variables):
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True)
        notifier(task_context("failed", map_index=0))
        notifier(task_context("failed", map_index=1))
        assert send_ok.call_count == 2
        assert set(variables.store) == {
            f"{STATE_VARIABLE_PREFIX}etl.load.0",
            f"{STATE_VARIABLE_PREFIX}etl.load.1",
        }

    def test_outcome_without_health_is_sent_and_keeps_the_health(self, send_ok, variables):
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True)
        notifier(task_context("failed"))
        notifier(task_context("running", max_tries=0))  # e.g. on_execute_callback: always news
        notifier(task_context("failed"))  # still failing since the last health told
        assert [text.splitlines()[0] for text in texts(send_ok)] == [
            "❌ DAG etl: task load failed in run manual__1 (try 3 of 3)",
            "🔔 DAG etl: task load is running in run manual__1",
        ]
        assert variables.value(f"{STATE_VARIABLE_PREFIX}etl.load")["health"] == "failing"

    def test_unchanged_state_writes_nothing(self, send_ok, variables):
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True)
        notifier(task_context("failed"))
        with mock.patch.object(variables, "set") as set_variable:
            notifier(task_context("failed"))
        set_variable.assert_not_called()


class TestDedupeWindow:
    def test_one_message_per_key_within_the_window(self, send_ok, variables, clock):
        notifier = CallbellNotifier(to="+31612345678", dedupe_window=timedelta(minutes=10))
        notifier(task_context("failed"))  # sent
        clock[0] += 60
        notifier(task_context("failed"))  # 1 minute later: quiet
        clock[0] += 9 * 60 - 1
        notifier(task_context("success"))  # still inside the window: quiet
        clock[0] += 1
        notifier(task_context("failed"))  # 10 minutes after the last message: sent
        assert send_ok.call_count == 2
        assert (
            variables.value(f"{STATE_VARIABLE_PREFIX}etl.load")["notified_at"] == "2030-03-17T17:56:40+00:00"
        )

    def test_seconds_work_too(self, send_ok, variables, clock):
        notifier = CallbellNotifier(to="+31612345678", dedupe_window=30)
        notifier(task_context())
        clock[0] += 29
        notifier(task_context())
        assert send_ok.call_count == 1

    def test_templated_key_shared_by_several_tasks(self, send_ok, variables, clock):
        notifier = CallbellNotifier(
            to="+31612345678", dedupe_window=600, dedupe_key="{{ params.team }}/alerts"
        )
        notifier(task_context(task_id="load"))
        notifier(task_context(task_id="report"))
        assert send_ok.call_count == 1
        assert set(variables.store) == {f"{STATE_VARIABLE_PREFIX}data_ops_alerts"}

    def test_overlong_key_is_hashed_within_airflows_limit(self, send_ok, variables):
        CallbellNotifier(to="+31612345678", dedupe_window=600, dedupe_key="k" * 300)(task_context())
        (key,) = variables.store
        assert key.startswith(STATE_VARIABLE_PREFIX)
        assert len(key) <= 250

    def test_combined_with_only_on_change(self, send_ok, variables, clock):
        # A DAG that flaps every minute: one message per window, and the recovery is never lost.
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True, dedupe_window=600)
        key = f"{STATE_VARIABLE_PREFIX}etl.load"
        notifier(task_context("failed", max_tries=0))  # news: sent
        for state in ["success", "failed", "success"]:  # changes within the window: quiet
            clock[0] += 60
            notifier(task_context(state, max_tries=0))
        assert send_ok.call_count == 1
        assert variables.value(key)["health"] == "failing"  # what the last message told
        clock[0] += 600
        notifier(task_context("success", max_tries=0))  # past the window, and a change from "failing"
        clock[0] += 600
        notifier(task_context("success", max_tries=0))  # no change: quiet
        assert [text.splitlines()[0] for text in texts(send_ok)] == [
            "❌ DAG etl: task load failed in run manual__1",
            "✅ DAG etl: task load succeeded in run manual__1",
        ]
        assert variables.value(key)["health"] == "ok"

    def test_still_failing_after_the_window_stays_quiet(self, send_ok, variables, clock):
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True, dedupe_window=600)
        notifier(task_context("failed"))
        clock[0] += 3600
        notifier(task_context("failed"))
        assert send_ok.call_count == 1


class TestState:
    def test_default_notifier_never_touches_variables(self, send_ok, monkeypatch):
        monkeypatch.setattr(notifications, "Variable", None)  # any use would raise
        CallbellNotifier(to="+31612345678")(task_context())
        assert send_ok.call_count == 1

    def test_unreadable_state_still_notifies(self, send_ok, variables):
        with mock.patch.object(variables, "get", side_effect=RuntimeError("API server unreachable")):
            CallbellNotifier(to="+31612345678", only_on_change=True)(task_context("failed"))
        assert send_ok.call_count == 1

    @pytest.mark.parametrize(
        "notified_at",
        [
            pytest.param("9999-12-31T23:59:59+00:00", id="far-future"),
            pytest.param("2030-04-01T00:00:00+00:00", id="future"),  # the clock says 2030-03-17
            pytest.param("not a time", id="junk-text"),
            pytest.param(1_900_000_000, id="a-number"),
            pytest.param("2030-03-17T09:00:00", id="without-offset"),
            pytest.param("2030-02-30T00:00:00+00:00", id="no-such-day"),
            pytest.param(["2030-03-17T09:00:00+00:00"], id="a-list"),
            pytest.param("2" * 10_000, id="huge"),
        ],
    )
    def test_a_dedupe_time_that_cannot_be_trusted_counts_as_absent(
        self, send_ok, variables, clock, notified_at
    ):
        """A time in the future would silence every alert until then; junk must not silence any.

        The clock says 2030-03-17T17:46:40Z.
        """
        key = f"{STATE_VARIABLE_PREFIX}etl.load"
        variables.store[key] = json.dumps({"health": "ok", "notified_at": notified_at, "run_id": "x"})
        CallbellNotifier(to="+31612345678", dedupe_window=timedelta(days=3650))(task_context())
        assert send_ok.call_count == 1
        assert variables.value(key)["notified_at"] == "2030-03-17T17:46:40+00:00"  # the send's own time

    def test_a_dedupe_time_in_the_past_still_counts(self, send_ok, variables, clock):
        key = f"{STATE_VARIABLE_PREFIX}etl.load"
        variables.store[key] = json.dumps({"health": "ok", "notified_at": "2030-03-17T17:46:00+00:00"})
        CallbellNotifier(to="+31612345678", dedupe_window=60)(task_context())
        assert send_ok.call_count == 0

    @pytest.mark.parametrize("health", ["failing ", "FAILING", 1, None, ["failing"]])
    def test_a_health_that_cannot_be_trusted_counts_as_absent(self, send_ok, variables, health):
        """Absent health is healthy: a failure is news, a success is not."""
        key = f"{STATE_VARIABLE_PREFIX}etl.load"
        notifier = CallbellNotifier(to="+31612345678", only_on_change=True)
        variables.store[key] = json.dumps({"health": health})
        notifier(task_context("success"))
        assert send_ok.call_count == 0
        variables.store[key] = json.dumps({"health": health})
        notifier(task_context("failed"))
        assert send_ok.call_count == 1

    def test_failed_send_remembers_nothing(self, requests_mock, callbell_conn, variables):
        refused = requests_mock.post(SEND_URL, status_code=422, json={"error": "invalid number"})
        # Airflow 3's BaseNotifier lets the error through; Airflow 2.x's logs it.
        with contextlib.suppress(CallbellAPIError):
            CallbellNotifier(to="+31612345678", only_on_change=True, dedupe_window=60)(task_context())
        assert refused.call_count == 1
        assert variables.store == {}  # the next callback tries again

    def test_unwritable_state_still_notifies(self, send_ok, variables):
        with mock.patch.object(variables, "set", side_effect=RuntimeError("API server unreachable")):
            CallbellNotifier(to="+31612345678", dedupe_window=60)(task_context())
        assert send_ok.call_count == 1


class TestAsync:
    @pytest.mark.skipif(
        not AIRFLOW_V_3_1_PLUS, reason="Deadline Alerts (awaited notifiers) came with Airflow 3.1"
    )
    def test_awaited_as_deadline_alerts_do(self, send_ok):
        context = {
            "dag_run": {"dag_id": "etl", "dag_run_id": "scheduled__2"},
            "deadline": {"id": "d1", "deadline_time": "2026-01-01T06:00:00+00:00"},
        }

        async def alert() -> None:
            await CallbellNotifier(to="+31612345678", context=context)

        asyncio.run(alert())
        assert texts(send_ok) == [
            "⏰ DAG etl missed its deadline (2026-01-01T06:00:00+00:00) in run scheduled__2"
        ]

    def test_sends_off_the_event_loop(self, send_ok):
        threads = []
        real_send = CallbellHook.send_message

        def record(hook: CallbellHook, *args: Any, **kwargs: Any) -> dict[str, Any]:
            threads.append(threading.get_ident())
            return real_send(hook, *args, **kwargs)

        async def notify() -> int:
            await CallbellNotifier(to="+31612345678").async_notify(task_context())
            return threading.get_ident()

        with mock.patch.object(CallbellHook, "send_message", record):
            loop_thread = asyncio.run(notify())
        assert len(threads) == 1
        assert threads[0] != loop_thread


class TestImportCost:
    def test_importing_does_not_import_requests_or_the_hook(self):
        watched = [
            "requests",
            "airflow_provider_callbell.hooks.callbell",
            "airflow_provider_callbell.triggers.callbell",
        ]
        modules = (
            "airflow_provider_callbell.notifications.callbell, airflow_provider_callbell.sensors.callbell"
        )
        assert modules_added_by(modules, watched) == []

    def test_the_rules_and_the_summary_wait_for_a_notifier_and_a_callback(self):
        watched = ["airflow_provider_callbell.validation", "airflow_provider_callbell.callback_events"]
        assert modules_added_by("airflow_provider_callbell.notifications.callbell", watched) == []

    def test_callback_event_keeps_its_old_import_path(self):
        from airflow_provider_callbell.notifications.callbell import CallbackEvent as old
        from airflow_provider_callbell.notifications.callbell import HITLRequest

        assert (old, HITLRequest) == (CallbackEvent, callback_events.HITLRequest)
        with pytest.raises(AttributeError, match="no attribute 'CallbackEvents'"):
            notifications.CallbackEvents  # noqa: B018
