"""``CallbellSendMessagesOperator`` against the sandbox, with Airflow Variables kept in a dict."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from unittest import mock

import pendulum
import pytest

from airflow_provider_callbell import progress as progress_module
from airflow_provider_callbell.exceptions import (
    CallbellBulkSendError,
    CallbellError,
    CallbellValidationError,
)
from airflow_provider_callbell.operators import callbell as operators
from airflow_provider_callbell.operators.callbell import (
    XCOM_RESULTS_KEY,
    XCOM_SUMMARY_KEY,
    CallbellSendMessagesOperator,
)
from tests.compat import DAG
from tests.helpers import Variables

KEY = "callbell_progress/bulk_dag/send/manual__1/-1"


@pytest.fixture
def variables(monkeypatch):
    store = Variables()
    monkeypatch.setattr(progress_module, "Variable", store)
    return store


def phone(i: int) -> str:
    return f"+316{i:08d}"


def operator(**kwargs: Any) -> CallbellSendMessagesOperator:
    with DAG("bulk_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        return CallbellSendMessagesOperator(task_id="send", **kwargs)


def run(op: CallbellSendMessagesOperator) -> tuple[Any, dict[str, Any]]:
    """Execute like a task would; return the result and the XComs pushed."""
    pushed: dict[str, Any] = {}
    ti = mock.Mock(dag_id="bulk_dag", task_id="send", run_id="manual__1", map_index=-1)
    ti.xcom_push.side_effect = lambda key, value: pushed.__setitem__(key, value)
    return op.execute({"ti": ti, "ds": "2026-01-01", "run_id": "manual__1"}), pushed  # type: ignore[arg-type]


def received(callbell_sandbox) -> dict[str, dict[str, Any]]:
    """What the sandbox accepted, by recipient: workers send concurrently, so arrival order varies."""
    return {m["body"].get("to", m["body"].get("bsuid")): m for m in callbell_sandbox.messages}


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({}, "give either messages", id="nothing"),
            pytest.param(
                {"messages": [], "recipients": [], "message": {}}, "give either messages", id="both-modes"
            ),
            pytest.param(
                {"recipients": ["+31612345678"]}, "message and recipients go together", id="no-message"
            ),
            pytest.param(
                {"messages": [], "message": {}}, "message and recipients go together", id="no-recipients"
            ),
            pytest.param(
                {"recipients": [], "message": {"to": "+31612345678"}},
                "message must not contain 'to': each recipient gives its own",
                id="message-names-recipient",
            ),
            pytest.param(
                {"recipients": [], "message": {"text": "hi"}},
                "'text' is not a message field",
                id="unknown-field",
            ),
        ],
    )
    def test_wrong_combinations_fail_when_the_dag_is_parsed(self, kwargs, match):
        with pytest.raises(CallbellValidationError, match=match):
            operator(**kwargs)

    def test_templated_fields(self):
        assert tuple(CallbellSendMessagesOperator.template_fields) == ("messages", "recipients")
        # A renderer only shows in Airflow's Rendered Template view for a templated field.
        assert CallbellSendMessagesOperator.template_fields_renderers == {
            "messages": "json",
            "recipients": "json",
        }


class TestSend:
    def test_a_list_of_messages(self, callbell_sandbox, variables):
        messages = [
            {"to": phone(0), "content": {"text": "first"}},
            {"to": "tg_42", "from": "telegram", "content": {"text": "second"}},
            {"to": phone(1), "type": "document", "content": {"url": "https://example.com/a.pdf"}},
        ]
        uuids, pushed = run(operator(messages=messages))
        got = received(callbell_sandbox)
        assert [got[m["to"]]["body"] for m in messages] == [
            {"to": phone(0), "from": "whatsapp", "type": "text", "content": {"text": "first"}},
            {"to": "tg_42", "from": "telegram", "type": "text", "content": {"text": "second"}},
            {
                "to": phone(1),
                "from": "whatsapp",
                "type": "document",
                "content": {"url": "https://example.com/a.pdf"},
            },
        ]
        assert uuids == [got[m["to"]]["uuid"] for m in messages]
        assert pushed[XCOM_RESULTS_KEY] == [{"uuid": u, "status": "enqueued"} for u in uuids]
        assert pushed[XCOM_SUMMARY_KEY] == {
            "total": 3,
            "sent": 3,
            "sent_earlier": 0,
            "failed": 0,
            "unknown": 0,
            "failures": [],
            "progress_variable": KEY,
        }
        assert variables == {}  # progress is deleted once every message went out

    def test_messages_as_json(self, callbell_sandbox, variables):
        uuids, _ = run(operator(messages=json.dumps([{"to": phone(0), "content": {"text": "hi"}}])))
        assert uuids == [callbell_sandbox.messages[0]["uuid"]]

    def test_recipients_with_one_message_rendered_for_each(self, callbell_sandbox, variables):
        op = operator(
            recipients=[
                {"to": phone(0), "name": "Ada", "order": 1042},
                phone(1),
                {"bsuid": "US.77", "name": "Grace", "order": 7},
            ],
            message={
                "content": {"text": "Hi {{ recipient.name | default('there') }} ({{ ds }})"},
                "metadata": {"order": "{{ recipient.order | default('none') }}"},
            },
        )
        uuids, _ = run(op)
        got = received(callbell_sandbox)
        assert [
            (got[to]["body"]["content"]["text"], got[to]["body"]["metadata"])
            for to in (phone(0), phone(1), "US.77")
        ] == [
            ("Hi Ada (2026-01-01)", {"order": "1042"}),
            ("Hi there (2026-01-01)", {"order": "none"}),
            ("Hi Grace (2026-01-01)", {"order": "7"}),
        ]
        assert got["US.77"]["body"]["bsuid"] == "US.77"
        assert "to" not in got["US.77"]["body"]
        assert uuids == [got[to]["uuid"] for to in (phone(0), phone(1), "US.77")]

    def test_a_template_error_fails_before_anything_is_sent(self, callbell_sandbox, variables):
        op = operator(
            recipients=[{"to": phone(0), "name": "Ada"}, {"to": phone(1)}],
            message={"content": {"text": "Hi {{ recipient.name }}"}},
        )
        with pytest.raises(
            CallbellValidationError,
            match=r"message could not be rendered for recipients\[1\]: 'dict object' has no attribute 'name'",
        ):
            run(op)
        assert callbell_sandbox.requests == []

    @pytest.mark.parametrize(
        ("recipients", "match"),
        [
            pytest.param([{"name": "Ada"}], r"recipients\[0\] must be a phone number", id="no-to"),
            pytest.param("not json", "recipients must be a list or a JSON list", id="not-json"),
            pytest.param('{"to": "+31612345678"}', "recipients must be a list", id="json-object"),
        ],
    )
    def test_bad_recipients_are_named(self, callbell_sandbox, variables, recipients, match):
        with pytest.raises(CallbellValidationError, match=match):
            run(operator(recipients=recipients, message={"content": {"text": "hi"}}))
        assert callbell_sandbox.requests == []

    def test_big_sends_push_only_the_summary(self, callbell_sandbox, variables, monkeypatch):
        monkeypatch.setattr(operators, "XCOM_RESULTS_MAX", 2)
        result, pushed = run(
            operator(recipients=[phone(i) for i in range(3)], message={"content": {"text": "x"}})
        )
        assert result is None
        assert set(pushed) == {XCOM_SUMMARY_KEY}
        assert pushed[XCOM_SUMMARY_KEY]["sent"] == 3


class TestRetries:
    def test_fails_after_attempting_all_and_a_retry_sends_only_what_failed(
        self, callbell_sandbox, variables, monkeypatch
    ):
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            json.dumps({**json.loads(callbell_sandbox.connection_json), "extra": {"max_retries": 0}}),
        )
        callbell_sandbox.configure(flaky_recipients={phone(1): 1, phone(3): 1})
        recipients = [phone(i) for i in range(5)]

        with pytest.raises(CallbellBulkSendError) as excinfo:
            run(operator(recipients=recipients, message={"content": {"text": "hi"}}))
        assert str(excinfo.value).startswith(
            "2 of 5 Callbell messages failed (3 sent); a retry of this task sends only the failed ones. "
            f"Why: 2 x CallbellServerError (HTTP 503), e.g. messages[1] to '{phone(1)}': CallbellServerError: "
        )
        assert (excinfo.value.failed, excinfo.value.total) == (2, 5)
        first_try = {m["body"]["to"]: m["uuid"] for m in callbell_sandbox.messages}
        assert sorted(first_try) == [phone(0), phone(2), phone(4)]
        stored = json.loads(variables[KEY])
        assert stored["sent"] == [[0, 1], [2, 3], [4, 5]]
        assert stored["uuids"] == {
            "0": first_try[phone(0)],
            "2": first_try[phone(2)],
            "4": first_try[phone(4)],
        }

        uuids, pushed = run(operator(recipients=recipients, message={"content": {"text": "hi"}}))
        sent_to = [m["body"]["to"] for m in callbell_sandbox.messages]
        assert sorted(sent_to) == sorted(recipients)  # each recipient exactly once over both tries
        by_recipient = {m["body"]["to"]: m["uuid"] for m in callbell_sandbox.messages}
        assert uuids == [by_recipient[r] for r in recipients]
        assert pushed[XCOM_SUMMARY_KEY]["sent_earlier"] == 3
        assert pushed[XCOM_RESULTS_KEY][0] == {"uuid": first_try[phone(0)], "status": "sent_in_earlier_try"}
        assert variables == {}

    @pytest.mark.parametrize(
        ("delivery", "sends_to_the_unknown"),
        [
            pytest.param("at_most_once", 1, id="at-most-once"),
            pytest.param("at_least_once", 2, id="at-least-once"),
        ],
    )
    def test_a_message_with_an_unknown_fate_is_sent_again_only_at_least_once(
        self, callbell_sandbox, variables, monkeypatch, delivery, sends_to_the_unknown
    ):
        """Callbell enqueues the message to phone(1) but answers 500: it may or may not have gone out."""
        extra = {"max_retries": 0, "delivery": delivery}
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            json.dumps({**json.loads(callbell_sandbox.connection_json), "extra": extra}),
        )
        callbell_sandbox.configure(unanswered_recipients={phone(1): 1}, flaky_recipients={phone(2): 1})
        recipients = [phone(i) for i in range(3)]

        with pytest.raises(CallbellBulkSendError) as excinfo:
            run(operator(recipients=recipients, message={"content": {"text": "hi"}}))
        assert "2 of 3 Callbell messages failed (1 sent, 1 unknown)" in str(excinfo.value)
        assert "may have gone out, so a retry does not send them again" in str(excinfo.value)
        assert json.loads(variables[KEY])["unknown"] == [[1, 2]]

        retry = operator(recipients=recipients, message={"content": {"text": "hi"}})
        if delivery == "at_most_once":
            with pytest.raises(CallbellBulkSendError, match=r"1 of 3 Callbell messages failed") as excinfo:
                run(retry)
            summary = excinfo.value  # the task still fails, so that a person looks
            assert "1 unknown" in str(summary)
            assert KEY in variables  # kept, so that a third try skips it too
        else:
            run(retry)
            assert variables == {}
        sent_to = [m["body"]["to"] for m in callbell_sandbox.messages]
        assert sent_to.count(phone(1)) == sends_to_the_unknown
        assert (sent_to.count(phone(0)), sent_to.count(phone(2))) == (1, 1)  # the plain failure is resent

    def test_the_summary_counts_unknown_apart(self, callbell_sandbox, variables, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            json.dumps({**json.loads(callbell_sandbox.connection_json), "extra": {"max_retries": 0}}),
        )
        callbell_sandbox.configure(unanswered_recipients={phone(1): 1}, flaky_recipients={phone(2): 1})
        op = operator(recipients=[phone(i) for i in range(4)], message={"content": {"text": "hi"}})
        pushed: dict[str, Any] = {}
        ti = mock.Mock(dag_id="bulk_dag", task_id="send", run_id="manual__1", map_index=-1)
        ti.xcom_push.side_effect = lambda key, value: pushed.__setitem__(key, value)
        with pytest.raises(CallbellBulkSendError):
            op.execute({"ti": ti, "ds": "2026-01-01", "run_id": "manual__1"})  # type: ignore[arg-type]
        summary = pushed[XCOM_SUMMARY_KEY]
        assert (summary["sent"], summary["failed"], summary["unknown"]) == (2, 1, 1)
        assert [f["index"] for f in summary["failures"]] == [1, 2]
        assert summary["failures"][0]["delivery_unknown"] is True

    def test_progress_for_other_recipients_stops_the_send(self, callbell_sandbox, variables):
        variables.set(KEY, json.dumps({"recipients_digest": "other", "total": 2, "sent": [[0, 1]]}))
        with pytest.raises(CallbellError, match="sent to other recipients than these 2"):
            run(operator(recipients=[phone(0), phone(1)], message={"content": {"text": "hi"}}))
        assert callbell_sandbox.requests == []
        assert KEY in variables

    def test_on_kill_stops_the_send_and_the_retry_sends_the_rest_once(
        self, callbell_sandbox, variables, monkeypatch
    ):
        recipients = [phone(i) for i in range(40)]
        op = operator(recipients=recipients, message={"content": {"text": "hi"}}, max_rps=100)
        record = progress_module.VariableProgress.record

        def kill_after_five(self, index, result):
            record(self, index, result)
            if self.known.state.count(progress_module._SENT) == 5:
                op.on_kill()  # what Airflow 3 does on SIGTERM

        monkeypatch.setattr(progress_module.VariableProgress, "record", kill_after_five)
        with pytest.raises(CallbellError, match="the bulk send was stopped"):
            run(op)
        first_try = {m["body"]["to"] for m in callbell_sandbox.messages}
        stored = json.loads(variables[KEY])
        assert {recipients[i] for start, stop in stored["sent"] for i in range(start, stop)} == first_try
        assert 5 <= len(first_try) < 40

        monkeypatch.setattr(progress_module.VariableProgress, "record", record)
        run(operator(recipients=recipients, message={"content": {"text": "hi"}}))
        assert sorted(m["body"]["to"] for m in callbell_sandbox.messages) == recipients  # each once


class Killed(BaseException):
    """The worker dies (SIGKILL): nothing after this point runs, no write reaches the Variable."""


class TestKilledWorker:
    @pytest.mark.parametrize(("delivery", "resent"), [("at_most_once", False), ("at_least_once", True)])
    def test_a_send_killed_between_claim_and_flush_leaves_its_block_unknown(
        self, callbell_sandbox, variables, monkeypatch, delivery, resent
    ):
        """The retry reads the killed try's claimed block as unknown: under at_most_once it sends none of
        it, counts it and fails the task; under at_least_once it sends it again."""
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            json.dumps({**json.loads(callbell_sandbox.connection_json), "extra": {"delivery": delivery}}),
        )
        recipients = [phone(i) for i in range(60)]
        block = progress_module.claim_block(10)  # 20 messages: two seconds at max_rps=10
        record = progress_module.VariableProgress.record
        dead = False

        def die_after_five(self, index, result):
            nonlocal dead
            record(self, index, result)
            if self.known.state.count(progress_module._SENT) == 5:
                dead = True
                raise Killed

        frozen_set = variables.set
        monkeypatch.setattr(
            variables, "set", lambda *args, **kwargs: None if dead else frozen_set(*args, **kwargs)
        )
        monkeypatch.setattr(progress_module.VariableProgress, "record", die_after_five)
        with pytest.raises(Killed):
            run(operator(recipients=recipients, message={"content": {"text": "hi"}}, max_rps=10))
        first_try = [m["body"]["to"] for m in callbell_sandbox.messages]
        assert 5 <= len(first_try) <= block
        assert json.loads(variables[KEY])["claimed"] == [[0, block]]  # written before the first send

        monkeypatch.setattr(progress_module.VariableProgress, "record", record)
        dead = False
        retry = operator(recipients=recipients, message={"content": {"text": "hi"}}, max_rps=1000)
        if resent:
            run(retry)
        else:
            with pytest.raises(CallbellBulkSendError, match=f"{block} of 60 Callbell messages failed"):
                run(retry)
        sent_to = Counter(m["body"]["to"] for m in callbell_sandbox.messages)
        # at_most_once: the claimed block is not sent again, whether the killed try sent it or not
        assert sent_to - Counter(first_try) == Counter(recipients if resent else recipients[block:])
        assert max(sent_to.values()) == (2 if resent else 1)
