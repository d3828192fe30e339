from __future__ import annotations

import inspect
from typing import get_type_hints
from unittest import mock

import pytest

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.operators.callbell import (
    MESSAGE_FIELDS,
    XCOM_MESSAGE_KEY,
    CallbellSendMessageOperator,
)
from airflow_provider_callbell.validation import MessageFields, MessageOptions
from tests.compat import modules_added_by
from tests.helpers import SEND_URL, UUID, set_connection


def run(operator: CallbellSendMessageOperator) -> tuple[str, mock.Mock]:
    ti = mock.Mock()
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
