"""The hook over real HTTP, against the local sandbox through its pytest fixture, as a user would."""

from __future__ import annotations

import time
from unittest import mock

import pytest

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellAuthError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator


class TestAgainstSandbox:
    def test_send_and_follow_status(self, callbell_sandbox):
        hook = CallbellHook()
        message = hook.send_message("+31 6 1234 5678", content={"text": "Hello!"}, fields="contact")
        assert message["status"] == "enqueued"
        assert message["contact"]["phoneNumber"] == "+31612345678"
        (received,) = callbell_sandbox.messages
        assert received["uuid"] == message["uuid"]
        assert received["body"]["content"] == {"text": "Hello!"}
        time.sleep(0.45)  # status_interval is 0.2 s: two steps later it is delivered
        assert hook.get_message_status(message["uuid"])["status"] == "delivered"

    def test_failed_delivery_carries_reason(self, callbell_sandbox):
        callbell_sandbox.configure(failing_recipients={"+31600000000": "number not on WhatsApp"})
        hook = CallbellHook()
        uuid = hook.send_message("+31600000000", content={"text": "x"})["uuid"]
        time.sleep(0.25)
        status = hook.get_message_status(uuid)
        assert status["status"] == "failed"
        assert status["messageStatusPayload"]["reason"] == "number not on WhatsApp"

    def test_operator_execute(self, callbell_sandbox):
        operator = CallbellSendMessageOperator(
            task_id="send", to="+31612345678", type="document", content={"url": "https://example.com/a.pdf"}
        )
        uuid = operator.execute({"ti": mock.Mock()})  # type: ignore[arg-type]
        assert [m["uuid"] for m in callbell_sandbox.messages] == [uuid]

    def test_templates_and_channels_across_pages(self, callbell_sandbox):
        hook = CallbellHook()
        assert [t["uuid"] for t in hook.list_templates()] == [t["uuid"] for t in callbell_sandbox.templates]
        whatsapp = hook.list_channels(type="whatsapp", active=True)
        assert whatsapp
        assert {c["type"] for c in whatsapp} == {"whatsapp"}
        assert len(hook.list_channels()) == len(callbell_sandbox.channels)

    def test_delete(self, callbell_sandbox):
        hook = CallbellHook()
        uuid = hook.send_message("+31612345678", content={"text": "x"})["uuid"]
        hook.delete_message(uuid)
        assert callbell_sandbox.messages[0]["deleted"] is True
        with pytest.raises(CallbellAPIError) as excinfo:
            hook.get_message_status(uuid)
        assert excinfo.value.status_code == 404

    def test_test_connection(self, callbell_sandbox, monkeypatch):
        assert CallbellHook().test_connection() == (True, "Connected to Callbell as sandbox@example.com")
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            callbell_sandbox.connection_json.replace(callbell_sandbox.token, "wrong-token"),
        )
        ok, message = CallbellHook().test_connection()
        assert not ok
        assert "HTTP 401" in message

    def test_wrong_token_is_auth_error(self, callbell_sandbox, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT",
            callbell_sandbox.connection_json.replace(callbell_sandbox.token, "wrong-token"),
        )
        with pytest.raises(CallbellAuthError) as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert excinfo.value.status_code == 401
        assert callbell_sandbox.messages == []
