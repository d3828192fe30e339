from __future__ import annotations

import hashlib
import inspect
import json
import time
from typing import Any, get_type_hints
from unittest import mock

import pytest

from airflow_provider_callbell import progress as progress_module
from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellProgressError,
    CallbellValidationError,
)
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.operators.callbell import (
    MESSAGE_FIELDS,
    XCOM_MESSAGE_KEY,
    CallbellSendMessageOperator,
)
from airflow_provider_callbell.validation import MessageFields, MessageOptions
from tests.compat import modules_added_by
from tests.helpers import SEND_URL, TOKEN, UUID, Variables, set_connection

KEY = "callbell_progress/dag/send/manual__1/-1"


@pytest.fixture(autouse=True)
def variables(monkeypatch):
    """Airflow Variables kept in a dict (the real task SDK: tests/integration/test_bulk.py)."""
    store = Variables()
    monkeypatch.setattr(progress_module, "Variable", store)
    return store


def run(operator: CallbellSendMessageOperator) -> tuple[str, mock.Mock]:
    ti = mock.Mock(dag_id="dag", task_id="send", run_id="manual__1", map_index=-1)
    return operator.execute({"ti": ti}), ti  # type: ignore[arg-type]


class TestCallbellSendMessageOperator:
    def test_every_message_field_is_templated(self):
        assert tuple(CallbellSendMessageOperator.template_fields) == MESSAGE_FIELDS
        # The hook takes the one description of a message: ``to`` by position, the rest as keywords.
        hook_params = inspect.signature(CallbellHook.send_message).parameters
        assert list(hook_params) == ["self", "to", "options"]
        assert ("to", *MessageOptions.__annotations__) == MESSAGE_FIELDS
        assert set(MESSAGE_FIELDS) == set(get_type_hints(MessageFields))
        operator_params = set(inspect.signature(CallbellSendMessageOperator.__init__).parameters)
        assert set(MESSAGE_FIELDS) <= operator_params
        assert CallbellSendMessageOperator.template_fields_renderers["content"] == "json"
        assert CallbellSendMessageOperator.template_fields_renderers["metadata"] == "json"

    def test_returns_uuid_and_pushes_message(self, send_ok):
        operator = CallbellSendMessageOperator(
            task_id="send",
            to="+31612345678",
            type="image",
            content={"url": "https://example.com/a.png", "text": "caption"},
            metadata={"run": "1"},
        )
        uuid, ti = run(operator)
        assert uuid == UUID
        ti.xcom_push.assert_called_once_with(key=XCOM_MESSAGE_KEY, value={"uuid": UUID, "status": "enqueued"})
        # The key is public API (DAGs pull it by name): renaming the constant must fail here.
        assert ti.xcom_push.call_args.kwargs["key"] == "callbell_message"
        assert send_ok.last_request.json() == {
            "to": "+31612345678",
            "from": "whatsapp",
            "type": "image",
            "content": {"url": "https://example.com/a.png", "text": "caption"},
            "metadata": {"run": "1"},
        }

    def test_uses_its_connection(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, conn_id="callbell_ops", host="http://127.0.0.1:9/v1")
        adapter = requests_mock.post(
            "http://127.0.0.1:9/v1/messages/send", json={"message": {"uuid": UUID, "status": "enqueued"}}
        )
        operator = CallbellSendMessageOperator(
            task_id="send", to="+31612345678", content='{"text": "hi"}', callbell_conn_id="callbell_ops"
        )
        assert run(operator)[0] == UUID
        assert adapter.last_request.json()["content"] == {"text": "hi"}

    def test_invalid_message_fails_before_sending(self, callbell_conn, requests_mock):
        operator = CallbellSendMessageOperator(
            task_id="send", to="{{ var.value.phone }}", content={"text": "hi"}
        )
        operator.to = "not a phone"  # as rendered
        with pytest.raises(CallbellValidationError, match=r"^to must be a phone number"):
            run(operator)
        assert requests_mock.call_count == 0

    def test_api_failure_fails_the_task(self, callbell_conn, requests_mock):
        requests_mock.post(SEND_URL, status_code=422, json={"error": "invalid number"})
        operator = CallbellSendMessageOperator(task_id="send", to="+31612345678", content={"text": "hi"})
        with pytest.raises(CallbellAPIError, match="invalid number"):
            run(operator)

    def test_importing_the_operator_does_not_import_requests(self):
        # On Airflow 2.x `import airflow` itself loads requests: the check is that the operator adds nothing.
        watched = ["requests", "airflow_provider_callbell.hooks.callbell"]
        assert modules_added_by("airflow_provider_callbell.operators.callbell", watched) == []


CONTACT_UUID = "c0ffee00c0ffee00c0ffee00c0ffee00"
EARLIER_UUID = "0123456789abcdef0123456789abcdef"
CONTACT_URL = "https://api.callbell.eu/v1/contacts/phone/%2B31612345678"
MESSAGES_URL = f"https://api.callbell.eu/v1/contacts/{CONTACT_UUID}/messages"


def now_iso(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def listed(text: str, offset: float = 0.0, **changes: Any) -> dict[str, Any]:
    """An outgoing message as ``GET /contacts/:uuid/messages`` lists it."""
    return {
        "text": text,
        "createdAt": now_iso(offset),
        "uuid": EARLIER_UUID,
        "status": "sent",
        "channel": "whatsapp",
        "from": "31000000000",
        "to": "31612345678",
        **changes,
    }


def send(text: str = "Your order shipped", **kwargs: Any) -> CallbellSendMessageOperator:
    return CallbellSendMessageOperator(task_id="send", to="+31612345678", content={"text": text}, **kwargs)


class TestAnUnknownFateIsRememberedAcrossTries:
    """A 500 (or no answer after sending) leaves a record; the retry looks in the conversation first."""

    @pytest.fixture
    def first_try_got_500(self, callbell_conn, requests_mock, variables):
        requests_mock.post(SEND_URL, status_code=500, json={"error": "boom"})
        with pytest.raises(CallbellAPIError, match=r"HTTP 500"):
            run(send())
        requests_mock.reset_mock()
        return json.loads(variables[KEY])

    def test_the_record_holds_when_and_a_digest_of_the_text_never_the_text_or_phone(
        self, first_try_got_500, variables
    ):
        record = first_try_got_500
        assert record["unknown"] == [[0, 1]]
        assert record["sent"] == []
        assert abs(record["unknown_since"] - time.time()) < 30
        assert record["unknown_texts"] == [progress_module.text_digest("Your order shipped", TOKEN)]
        # Keyed with the token: a plain hash of a short text (a code) could be reversed by trying them all.
        assert record["unknown_texts"] != [hashlib.sha256(b"Your order shipped").hexdigest()]
        assert TOKEN not in variables[KEY]
        assert "Your order" not in variables[KEY]
        assert "612345678" not in variables[KEY]

    def test_found_in_the_conversation_means_done_with_its_uuid(
        self, first_try_got_500, requests_mock, variables
    ):
        requests_mock.get(CONTACT_URL, json={"contact": {"uuid": CONTACT_UUID}})
        messages = requests_mock.get(
            MESSAGES_URL,
            json={
                "messages": [listed("Thanks!", status="received", uuid=None), listed("Your order shipped")],
                "meta": {"page": 1, "pages": 1},
            },
        )
        sent = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        uuid, ti = run(send())
        assert uuid == EARLIER_UUID
        ti.xcom_push.assert_called_once_with(
            key=XCOM_MESSAGE_KEY, value={"uuid": EARLIER_UUID, "status": "sent_in_earlier_try"}
        )
        assert not sent.called
        assert messages.called
        assert KEY not in variables  # done: the record is deleted

    def test_not_found_fails_under_at_most_once_and_sends_nothing(
        self, first_try_got_500, requests_mock, variables
    ):
        requests_mock.get(CONTACT_URL, json={"contact": {"uuid": CONTACT_UUID}})
        requests_mock.get(
            MESSAGES_URL,
            json={
                "messages": [
                    listed("Another text"),  # other content
                    listed("Your order shipped", status="received", uuid="fe" * 16),  # the customer's
                    listed("Your order shipped", createdAt="yesterday"),  # a time nobody can read
                    listed("Your order shipped", uuid="not a uuid\n"),  # no usable uuid
                    listed("Your order shipped", offset=-3600),  # before the first try started
                ]
            },
        )
        sent = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        with pytest.raises(CallbellProgressError, match="may or may not have gone out") as raised:
            run(send())
        assert "the conversation does not list it since" in str(raised.value)
        assert KEY in str(raised.value)
        assert "at_least_once" in str(raised.value)
        assert raised.value.key == KEY
        assert not sent.called
        assert KEY in variables  # kept: the next retry (or a person) still knows

    def test_not_found_sends_again_under_at_least_once_and_forgets_on_success(
        self, first_try_got_500, requests_mock, variables, monkeypatch
    ):
        set_connection(monkeypatch, extra={"delivery": "at_least_once"})
        requests_mock.get(CONTACT_URL, status_code=404, json={"error": "not found"})  # no contact yet
        sent = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        assert run(send())[0] == UUID
        assert sent.call_count == 1
        assert KEY not in variables

    @pytest.mark.parametrize(("offset", "found"), [(-30, True), (-90, False)])
    def test_a_minute_of_clock_skew_is_allowed(self, first_try_got_500, requests_mock, offset, found):
        requests_mock.get(CONTACT_URL, json={"contact": {"uuid": CONTACT_UUID}})
        requests_mock.get(
            MESSAGES_URL,
            json={"messages": [listed("Your order shipped", offset=offset)], "meta": {"pages": 1}},
        )
        if found:
            assert run(send())[0] == EARLIER_UUID
        else:
            with pytest.raises(CallbellProgressError, match="may or may not have gone out"):
                run(send())

    def test_a_retry_with_other_text_still_looks_for_what_the_first_try_sent(
        self, first_try_got_500, requests_mock
    ):
        requests_mock.get(CONTACT_URL, json={"contact": {"uuid": CONTACT_UUID}})
        requests_mock.get(
            MESSAGES_URL, json={"messages": [listed("Your order shipped")], "meta": {"pages": 1}}
        )
        assert run(send("Your order shipped (try 2)"))[0] == EARLIER_UUID

    def test_a_retry_to_another_recipient_is_refused(self, first_try_got_500, requests_mock):
        op = CallbellSendMessageOperator(task_id="send", to="+31687654321", content={"text": "x"})
        with pytest.raises(CallbellProgressError, match="other recipients"):
            run(op)
        assert requests_mock.call_count == 0

    def test_a_lookup_error_fails_the_try_and_keeps_the_record(
        self, first_try_got_500, requests_mock, variables
    ):
        requests_mock.get(CONTACT_URL, status_code=401, json={"error": "bad token"})
        sent = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        with pytest.raises(CallbellAPIError, match="HTTP 401"):
            run(send())
        assert not sent.called
        assert KEY in variables


def _task_timeout() -> type[BaseException]:
    """The exception Airflow raises in a task past its ``execution_timeout`` (moved in Airflow 3)."""
    try:
        from airflow.sdk.exceptions import AirflowTaskTimeout
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowTaskTimeout
    return AirflowTaskTimeout


class TestAnInterruptedSendIsRemembered:
    """A task timeout, SIGTERM or Ctrl-C may stop the send after the request left: the retry looks first."""

    @pytest.mark.parametrize(
        "interruption",
        [pytest.param(_task_timeout(), id="task-timeout"), pytest.param(KeyboardInterrupt, id="ctrl-c")],
    )
    def test_the_retry_looks_in_the_conversation_and_does_not_send_again(
        self, callbell_conn, requests_mock, variables, interruption
    ):
        def interrupted(request: Any, context: Any) -> None:  # the request has left; then the timeout
            raise interruption("Timeout, PID: 4242")

        requests_mock.post(SEND_URL, json=interrupted)
        with pytest.raises(interruption):
            run(send())
        record = json.loads(variables[KEY])
        assert record["unknown"] == [[0, 1]]
        assert record["unknown_texts"] == [progress_module.text_digest("Your order shipped", TOKEN)]

        requests_mock.reset_mock()
        requests_mock.get(CONTACT_URL, json={"contact": {"uuid": CONTACT_UUID}})
        requests_mock.get(
            MESSAGES_URL, json={"messages": [listed("Your order shipped")], "meta": {"pages": 1}}
        )
        sent = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        assert run(send())[0] == EARLIER_UUID
        assert not sent.called

    def test_a_send_that_never_connected_writes_nothing(
        self, callbell_conn, requests_mock, variables, monkeypatch
    ):
        import requests

        set_connection(monkeypatch, extra={"max_retries": 0})
        requests_mock.post(SEND_URL, exc=requests.exceptions.ConnectTimeout)
        with pytest.raises(CallbellAPIError, match="no answer") as raised:
            run(send())
        assert raised.value.maybe_acted_on is False  # a connect timeout proves nothing left
        assert KEY not in variables


class TestOnlyAnUnknownFateIsRemembered:
    def test_a_success_writes_nothing(self, send_ok, variables, monkeypatch):
        monkeypatch.setattr(variables, "set", lambda *a, **k: pytest.fail("no write on success"))
        assert run(send())[0] == UUID

    @pytest.mark.parametrize("status", [422, 503])
    def test_a_clear_refusal_writes_nothing(self, requests_mock, variables, monkeypatch, status):
        set_connection(monkeypatch, extra={"max_retries": 0})
        requests_mock.post(SEND_URL, status_code=status, json={"error": "no"})
        with pytest.raises(CallbellAPIError, match=f"HTTP {status}"):
            run(send())
        assert KEY not in variables

    def test_a_recipient_whose_conversation_cannot_be_found_fails_under_at_most_once(
        self, callbell_conn, requests_mock, variables
    ):
        requests_mock.post(SEND_URL, status_code=500, json={"error": "boom"})
        op = CallbellSendMessageOperator(task_id="send", bsuid="US.1234567890", content={"text": "hi"})
        with pytest.raises(CallbellAPIError):
            run(op)
        requests_mock.reset_mock()
        with pytest.raises(CallbellProgressError, match="could not be looked for"):
            run(op)
        assert requests_mock.call_count == 0

    @pytest.mark.parametrize(
        "junk",
        [
            pytest.param("{not json", id="not-json"),
            pytest.param('{"recipients_digest": 1}', id="wrong-shape"),
            pytest.param("[]", id="a-list"),
        ],
    )
    def test_an_untrusted_record_sends_nothing(self, send_ok, variables, junk):
        variables[KEY] = junk
        with pytest.raises(CallbellProgressError, match="cannot be used"):
            run(send())
        assert not send_ok.called


class TestWithTheSandbox:
    """The sandbox stores the message, answers 500, and lists the message in the contact's conversation."""

    def test_the_retry_finds_the_first_tries_message_and_sends_nothing(self, callbell_sandbox, variables):
        callbell_sandbox.configure(unanswered_recipients={"+31612345678": 1})
        with pytest.raises(CallbellAPIError, match="HTTP 500"):
            run(send())
        assert len(callbell_sandbox.messages) == 1
        uuid, _ = run(send())
        assert uuid == callbell_sandbox.messages[0]["uuid"]
        assert len(callbell_sandbox.messages) == 1  # not sent twice
        assert KEY not in variables

    def test_a_message_the_sandbox_never_stored_is_not_found(self, callbell_sandbox, variables):
        """A reset sandbox forgets the message: the retry must not mistake anything else for it."""
        callbell_sandbox.configure(unanswered_recipients={"+31612345678": 1})
        with pytest.raises(CallbellAPIError, match="HTTP 500"):
            run(send())
        callbell_sandbox.reset()
        with pytest.raises(CallbellProgressError, match="may or may not have gone out"):
            run(send())
        assert callbell_sandbox.messages == []
