from __future__ import annotations

import asyncio
import json
import socket
from unittest import mock

import pytest
import requests

from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellAuthError,
    CallbellConnectionConfigError,
    CallbellRateLimitError,
    CallbellServerError,
    CallbellValidationError,
)
from airflow_provider_callbell.get_provider_info import CONN_FIELDS
from airflow_provider_callbell.hooks.callbell import DEFAULT_TIMEOUT, CallbellHook
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS
from tests.compat import redact
from tests.helpers import BASE_URL, SEND_URL, TOKEN, UUID, set_connection


@pytest.fixture
def hook_logs():
    """Every line the hook logs, at every level, as "LEVEL message" (Airflow's logger bypasses caplog)."""
    lines: list[str] = []

    class Recorder:
        def __getattr__(self, level):
            return lambda msg, *args, **_: lines.append(f"{level.upper()} {msg % args}")

    with mock.patch.object(CallbellHook, "log", new_callable=mock.PropertyMock, return_value=Recorder()):
        yield lines


class _Posted(dict):
    """What a web framework hands a wtforms form: a mapping with ``getlist``."""

    def getlist(self, key):
        return [self[key]] if key in self else []


class TestHookAttributes:
    def test_how_airflow_sees_it(self):
        assert CallbellHook.conn_name_attr == "callbell_conn_id"
        assert CallbellHook.default_conn_name == "callbell_default"
        assert CallbellHook.conn_type == "callbell"
        assert CallbellHook.hook_name == "Callbell"

    def test_init_touches_nothing(self):
        with mock.patch.object(CallbellHook, "get_connection") as get_connection:
            hook = CallbellHook("does_not_exist")
        get_connection.assert_not_called()
        assert hook.callbell_conn_id == "does_not_exist"

    def test_ui_field_behaviour(self):
        behaviour = CallbellHook.get_ui_field_behaviour()
        assert behaviour["relabeling"]["password"] == "API token (required)"
        assert set(behaviour["hidden_fields"]) == {"login", "schema", "extra"}
        # The port shows, optional: Airflow 3.3.2's Test button works only for a connection with one.
        assert (behaviour["relabeling"]["port"], behaviour["placeholders"]["port"]) == (
            "Port (optional)",
            "443",
        )
        assert "host" not in behaviour["hidden_fields"]
        assert "password" not in behaviour["hidden_fields"]

    def test_connection_form_widgets_offer_the_extras(self):
        wtforms = pytest.importorskip("wtforms")
        widgets = CallbellHook.get_connection_form_widgets()
        assert set(widgets) == set(CONN_FIELDS)
        assert {name: str(widget.args[0]) for name, widget in widgets.items()} == {
            name: spec["label"] for name, spec in CONN_FIELDS.items()
        }
        # Airflow drops a connection type whose form uses any other field class.
        allowed = {wtforms.IntegerField, wtforms.PasswordField, wtforms.StringField, wtforms.BooleanField}
        assert {widget.field_class for widget in widgets.values()} <= allowed

    @pytest.mark.parametrize(
        ("name", "value", "valid"),
        [
            pytest.param("timeout", "10", True, id="timeout-whole"),
            pytest.param("timeout", "2.5", True, id="timeout-fraction"),
            pytest.param("timeout", "", True, id="timeout-empty-means-default"),
            pytest.param("timeout", "ten", False, id="timeout-word"),
            pytest.param("timeout", "-1", False, id="timeout-negative"),
            pytest.param("from", "telegram", True, id="channel-known"),
            pytest.param("from", "", True, id="channel-empty-means-default"),
            pytest.param("from", "sms", False, id="channel-unknown"),
        ],
    )
    def test_form_field_checks_what_the_hook_accepts(self, name, value, valid):
        wtforms = pytest.importorskip("wtforms")
        form_class = type("Form", (wtforms.Form,), {name: CallbellHook.get_connection_form_widgets()[name]})
        form = form_class(_Posted({name: value}))
        assert form.validate() is valid, form.errors

    @pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 2.x renders the form with Flask-AppBuilder")
    def test_connection_form_widgets_use_flask_appbuilder_on_airflow_2(self):
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget

        for widget in CallbellHook.get_connection_form_widgets().values():
            assert isinstance(widget.kwargs["widget"], BS3TextFieldWidget)


class TestConnection:
    def test_request_carries_token_and_json_headers(self, send_ok):
        CallbellHook().send_message("+31612345678", content={"text": "Hello!"})
        headers = send_ok.last_request.headers
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Content-Type"] == "application/json"
        assert headers["Accept"] == "application/json"

    def test_missing_token_is_a_clear_error(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, password="")
        with pytest.raises(CallbellConnectionConfigError, match="'callbell_default' has no API token"):
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert requests_mock.call_count == 0

    @pytest.mark.parametrize(
        ("host", "url"),
        [
            pytest.param(
                "http://127.0.0.1:8787/v1", "http://127.0.0.1:8787/v1/messages/send", id="loopback-ip"
            ),
            pytest.param(
                "http://localhost:9000/v1/", "http://localhost:9000/v1/messages/send", id="localhost"
            ),
            pytest.param("http://[::1]:9000/v1", "http://[::1]:9000/v1/messages/send", id="ipv6-loopback"),
            pytest.param(
                "https://proxy.example.com/callbell",
                "https://proxy.example.com/callbell/messages/send",
                id="https",
            ),
        ],
    )
    def test_base_url_from_host(self, monkeypatch, requests_mock, host, url):
        set_connection(monkeypatch, host=host)
        adapter = requests_mock.post(url, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert adapter.called

    def test_host_without_scheme_means_https(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, host="api.callbell.eu", schema="v1")
        adapter = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert adapter.called

    @pytest.mark.parametrize(
        "host", ["http://api.callbell.eu/v1", "http://10.0.0.5/v1", "http://127.example.com"]
    )
    def test_plain_http_to_remote_host_is_refused(self, monkeypatch, requests_mock, host):
        set_connection(monkeypatch, host=host)
        with pytest.raises(CallbellConnectionConfigError, match="plain http") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert requests_mock.call_count == 0
        assert TOKEN not in str(excinfo.value)

    def test_other_scheme_is_refused(self, monkeypatch):
        set_connection(monkeypatch, host="ftp://api.callbell.eu/v1")
        with pytest.raises(CallbellConnectionConfigError, match=r"is not an http\(s\) base URL"):
            CallbellHook().list_templates()

    def test_extras_give_channel_and_defaults(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, extra={"from": "telegram", "channel_uuid": "chan1", "timeout": 7})
        adapter = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellHook().send_message("tg_user_42", content={"text": "x"})
        assert adapter.last_request.json() == {
            "to": "tg_user_42",
            "from": "telegram",
            "type": "text",
            "content": {"text": "x"},
            "channel_uuid": "chan1",
        }
        assert adapter.last_request.timeout == (7.0, 7.0)

    def test_airflow2_prefixed_extras_are_read(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, extra={"extra__callbell__from": "instagram"})
        adapter = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellHook().send_message("insta_user", content={"text": "x"})
        assert adapter.last_request.json()["from"] == "instagram"

    def test_arguments_win_over_extras(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, extra={"from": "telegram", "channel_uuid": "chan1", "timeout": 7})
        adapter = requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        CallbellHook(timeout=(1, 2)).send_message(
            "+31612345678", content={"text": "x"}, from_="whatsapp", channel_uuid="chan2"
        )
        body = adapter.last_request.json()
        assert (body["from"], body["channel_uuid"]) == ("whatsapp", "chan2")
        assert adapter.last_request.timeout == (1, 2)

    def test_default_timeout_bounds_every_request(self, send_ok):
        CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert send_ok.last_request.timeout == DEFAULT_TIMEOUT

    @pytest.mark.parametrize("timeout", ["soon", -1, 0])
    @pytest.mark.parametrize("name", ["timeout", "connect_timeout", "read_timeout"])
    def test_bad_timeout_extra(self, monkeypatch, requests_mock, name, timeout):
        set_connection(monkeypatch, extra={name: timeout})
        with pytest.raises(
            CallbellConnectionConfigError,
            match=f"^Connection 'callbell_default': extra '{name}' must be a positive",
        ):
            CallbellHook().list_templates()
        assert requests_mock.call_count == 0

    def test_separate_connect_and_read_timeouts(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, extra={"timeout": 9, "connect_timeout": "2", "read_timeout": 45})
        adapter = requests_mock.get(f"{BASE_URL}/templates", json={"templates": []})
        CallbellHook().list_templates()
        assert adapter.last_request.timeout == (2.0, 45.0)

    def test_one_session_and_one_connection_lookup_per_hook(self, send_ok):
        hook = CallbellHook()
        with mock.patch.object(CallbellHook, "get_connection", wraps=hook.get_connection) as get_connection:
            hook.send_message("+31612345678", content={"text": "1"})
            session = hook.session
            hook.send_message("+31612345678", content={"text": "2"})
            hook.get_conn()
        assert get_connection.call_count == 1
        assert hook.session is session is hook.get_conn()
        assert send_ok.call_count == 2

    def test_token_is_masked_for_airflow_logs_once_read(self, callbell_conn):
        _ = CallbellHook()._settings
        assert redact(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"

    def test_settings_repr_hides_token(self, callbell_conn):
        assert TOKEN not in repr(CallbellHook()._settings)


class TestSendMessage:
    def test_returns_message_object(self, send_ok):
        message = CallbellHook().send_message("+31612345678", content={"text": "Hello!"})
        assert message == {"uuid": UUID, "status": "enqueued"}
        assert send_ok.last_request.json() == {
            "to": "+31612345678",
            "from": "whatsapp",
            "type": "text",
            "content": {"text": "Hello!"},
        }

    @pytest.mark.parametrize(
        ("type_", "content"),
        [
            pytest.param("text", {"text": "Hello!"}, id="text"),
            pytest.param("image", {"url": "https://example.com/a.jpeg", "text": "caption"}, id="image"),
            pytest.param("document", {"url": "https://example.com/a.pdf"}, id="document"),
            pytest.param("audio", {"url": "https://example.com/a.mp3"}, id="audio"),
            pytest.param("video", {"url": "https://example.com/a.mp4"}, id="video"),
        ],
    )
    def test_every_message_type_is_sent_as_given(self, send_ok, type_, content):
        CallbellHook().send_message("+31612345678", type=type_, content=content)
        body = send_ok.last_request.json()
        assert (body["type"], body["content"]) == (type_, content)

    def test_fields_bring_contact_and_conversation(self, callbell_conn, requests_mock):
        answer = {
            "uuid": UUID,
            "status": "enqueued",
            "contact": {"uuid": "c1"},
            "conversation": {"href": "h"},
        }
        adapter = requests_mock.post(SEND_URL, json={"message": answer})
        message = CallbellHook().send_message(
            "+31612345678", content={"text": "x"}, fields="contact,conversation"
        )
        assert message == answer
        assert adapter.last_request.json()["fields"] == "contact,conversation"

    def test_invalid_message_sends_nothing(self, callbell_conn, requests_mock):
        with pytest.raises(CallbellValidationError, match=r"content\.url"):
            CallbellHook().send_message("+31612345678", type="image", content={"url": "not a url"})
        assert requests_mock.call_count == 0

    def test_invalid_from_extra_is_named(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, extra={"from": "sms"})
        with pytest.raises(CallbellValidationError, match="from must be one of"):
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert requests_mock.call_count == 0

    def test_logs_recipient_and_uuid(self, send_ok, hook_logs):
        CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert f"INFO Callbell enqueued text message {UUID} to +31612345678 via whatsapp" in hook_logs


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "error", "hint"),
        [
            pytest.param(400, CallbellAPIError, "refused the request", id="400"),
            pytest.param(401, CallbellAuthError, "check the password", id="401"),
            pytest.param(403, CallbellAuthError, "check the password", id="403"),
            pytest.param(404, CallbellAPIError, "refused the request", id="404"),
            pytest.param(422, CallbellAPIError, "refused the request", id="422"),
            pytest.param(429, CallbellRateLimitError, "rate limit", id="429"),
            pytest.param(500, CallbellServerError, "failed", id="500"),
            pytest.param(503, CallbellServerError, "failed", id="503"),
            pytest.param(302, CallbellAPIError, "redirect", id="302"),
        ],
    )
    def test_status_maps_to_typed_error(self, callbell_conn, requests_mock, status, error, hint):
        requests_mock.post(SEND_URL, status_code=status, text='{"error": "nope"}')
        with pytest.raises(error) as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        err = excinfo.value
        assert type(err) is error
        assert err.status_code == status
        assert err.endpoint == "POST /messages/send"
        assert err.body == '{"error": "nope"}'
        assert hint in str(err)
        assert f"HTTP {status}" in str(err)
        assert TOKEN not in str(err)

    def test_body_excerpt_is_short(self, callbell_conn, requests_mock):
        requests_mock.post(SEND_URL, status_code=502, text="<html>" + "x" * 100_000)
        with pytest.raises(CallbellServerError) as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert len(excinfo.value.body) == 500
        assert len(str(excinfo.value)) < 800

    @pytest.mark.parametrize(
        ("answer", "match"),
        [
            pytest.param({"text": "<html>OK</html>"}, "expected a JSON answer", id="html-200"),
            pytest.param({"json": {"ok": True}}, "expected a JSON object with 'message'", id="no-message"),
            pytest.param(
                {"json": {"message": "queued"}}, "expected a JSON object with 'message'", id="message-str"
            ),
            pytest.param({"json": {"message": {"status": "enqueued"}}}, "has no 'uuid'", id="no-uuid"),
            pytest.param({"json": [1, 2]}, "expected a JSON object", id="json-array"),
        ],
    )
    def test_odd_answers_are_api_errors(self, callbell_conn, requests_mock, answer, match):
        requests_mock.post(SEND_URL, status_code=200, **answer)
        with pytest.raises(CallbellAPIError, match=match):
            CallbellHook().send_message("+31612345678", content={"text": "x"})

    def test_huge_answer_is_refused_unread(self, callbell_conn, requests_mock):
        requests_mock.post(SEND_URL, status_code=200, content=b'{"message": "' + b"x" * (2 << 20) + b'"}')
        with pytest.raises(CallbellAPIError, match="larger than 1048576 bytes") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert excinfo.value.status_code == 200
        assert len(excinfo.value.body) == 500

    def test_no_answer_is_an_api_error_without_status(self, callbell_conn, requests_mock):
        requests_mock.post(SEND_URL, exc=requests.ConnectionError("connection refused"))
        with pytest.raises(CallbellAPIError, match="no answer from Callbell") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert excinfo.value.status_code is None

    def test_a_send_that_never_reached_callbell_is_known_unsent(self, monkeypatch):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]  # nothing listens there once closed
        set_connection(monkeypatch, host=f"http://127.0.0.1:{port}/v1", extra={"max_retries": 0})
        with pytest.raises(CallbellAPIError, match="no answer from Callbell") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert excinfo.value.maybe_acted_on is False

    def test_a_send_without_an_answer_may_have_gone_out(self, monkeypatch):
        with socket.socket() as silent:  # accepts the request, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            host = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
            set_connection(monkeypatch, host=host, extra={"max_retries": 0, "timeout": 0.3})
            with pytest.raises(CallbellAPIError, match="no answer from Callbell") as excinfo:
                CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert excinfo.value.maybe_acted_on is True

    def test_token_never_logged_at_any_level(self, callbell_conn, requests_mock, hook_logs):
        requests_mock.post(SEND_URL, status_code=401, text="bad token")
        requests_mock.get(
            f"{BASE_URL}/auth/me", json={"status": "ok", "user_email": "a@b.c", "api_key": TOKEN}
        )
        hook = CallbellHook()
        with pytest.raises(CallbellAuthError):
            hook.send_message("+31612345678", content={"text": "x"})
        ok, message = hook.test_connection()
        assert ok
        assert any(line.startswith("DEBUG GET /auth/me answered 200") for line in hook_logs)
        assert TOKEN not in "\n".join(hook_logs)
        assert TOKEN not in message


class TestOtherEndpoints:
    def test_get_message_status(self, callbell_conn, requests_mock):
        answer = {"uuid": UUID, "status": "failed", "messageStatusPayload": {"reason": "blocked"}}
        requests_mock.get(f"{BASE_URL}/messages/status/{UUID}", json={"message": answer})
        assert CallbellHook().get_message_status(UUID) == answer

    def test_status_of_bad_uuid_sends_nothing(self, callbell_conn, requests_mock):
        with pytest.raises(CallbellValidationError, match="uuid must be"):
            CallbellHook().get_message_status("../auth/me")
        assert requests_mock.call_count == 0

    def test_delete_message(self, callbell_conn, requests_mock):
        adapter = requests_mock.delete(f"{BASE_URL}/messages/{UUID}", status_code=204)
        assert CallbellHook().delete_message(UUID) is None
        assert adapter.called

    def test_delete_unknown_message(self, callbell_conn, requests_mock):
        requests_mock.delete(f"{BASE_URL}/messages/{UUID}", status_code=404, json={"error": "not found"})
        with pytest.raises(CallbellAPIError) as excinfo:
            CallbellHook().delete_message(UUID)
        assert excinfo.value.status_code == 404
        assert excinfo.value.endpoint == f"DELETE /messages/{UUID}"

    def test_list_templates_follows_every_page(self, callbell_conn, requests_mock):
        pages = {
            1: {"templates": [{"uuid": "t1"}, {"uuid": "t2"}], "meta": {"page": 1, "pages": 3}},
            2: {"templates": [{"uuid": "t3"}, {"uuid": "t4"}], "meta": {"page": 2, "pages": 3}},
            3: {"templates": [{"uuid": "t5"}], "meta": {"page": 3, "pages": 3}},
        }
        requests_mock.get(f"{BASE_URL}/templates", json=lambda request, _: pages[int(request.qs["page"][0])])
        templates = CallbellHook().list_templates()
        assert [t["uuid"] for t in templates] == ["t1", "t2", "t3", "t4", "t5"]
        assert requests_mock.call_count == 3

    def test_list_channels_filters_and_pages(self, callbell_conn, requests_mock):
        adapter = requests_mock.get(
            f"{BASE_URL}/channels",
            json=lambda request, _: {
                "channels": [{"uuid": f"c{request.qs['page'][0]}"}],
                "meta": {"page": int(request.qs["page"][0]), "pages": 2},
            },
        )
        channels = CallbellHook().list_channels(type="whatsapp", active=True)
        assert [c["uuid"] for c in channels] == ["c1", "c2"]
        assert adapter.last_request.qs == {"type": ["whatsapp"], "active": ["true"], "page": ["2"]}

    def test_list_without_meta_is_one_page(self, callbell_conn, requests_mock):
        requests_mock.get(f"{BASE_URL}/channels", json={"channels": [{"uuid": "c1"}]})
        assert CallbellHook().list_channels() == [{"uuid": "c1"}]
        assert requests_mock.last_request.qs == {"page": ["1"]}

    def test_list_with_wrong_shape(self, callbell_conn, requests_mock):
        requests_mock.get(f"{BASE_URL}/templates", json={"data": []})
        with pytest.raises(CallbellAPIError, match="list 'templates'"):
            CallbellHook().list_templates()


class TestTestConnection:
    def test_success_names_the_account(self, callbell_conn, requests_mock):
        requests_mock.get(
            f"{BASE_URL}/auth/me",
            json={"status": "ok", "user_email": "ops@example.com", "user_name": "Ops", "api_key": TOKEN},
        )
        assert CallbellHook().test_connection() == (True, "Connected to Callbell as ops@example.com")

    def test_wrong_token(self, callbell_conn, requests_mock):
        requests_mock.get(f"{BASE_URL}/auth/me", status_code=401, json={"error": "Unauthorized"})
        ok, message = CallbellHook().test_connection()
        assert not ok
        assert "HTTP 401" in message
        assert "check the password" in message

    def test_missing_token(self, monkeypatch):
        set_connection(monkeypatch, password=None)
        ok, message = CallbellHook().test_connection()
        assert (ok, "has no API token" in message) == (False, True)

    def test_unexpected_answer(self, callbell_conn, requests_mock):
        requests_mock.get(f"{BASE_URL}/auth/me", json={"hello": "world"})
        ok, message = CallbellHook().test_connection()
        assert not ok
        assert "user_email" in message


class TestAsyncMessageStatus:
    """``aget_message_status``: what the trigger calls, with the sync path's connection and errors."""

    def test_same_url_headers_and_timeout_as_sync(self, monkeypatch, async_answers):
        import httpx

        set_connection(monkeypatch, host="https://eu.callbell.test/v1", extra={"timeout": 7})
        answers, seen = async_answers
        message = {"uuid": UUID, "status": "delivered", "messageStatusPayload": {}}
        answers.append(httpx.Response(200, json={"message": message}))
        assert asyncio.run(CallbellHook().aget_message_status(UUID)) == message
        (request,) = seen
        assert str(request.url) == f"https://eu.callbell.test/v1/messages/status/{UUID}"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/json"
        assert request.extensions["timeout"] == {"connect": 7, "read": 7, "write": 7, "pool": 7}

    def test_default_timeout_is_connect_and_read(self, callbell_conn, async_answers):
        import httpx

        answers, seen = async_answers
        answers.append(httpx.Response(200, json={"message": {"status": "sent"}}))
        asyncio.run(CallbellHook().aget_message_status(UUID))
        connect, read = DEFAULT_TIMEOUT
        assert seen[0].extensions["timeout"] == {
            "connect": connect,
            "read": read,
            "write": read,
            "pool": read,
        }

    @pytest.mark.parametrize(
        ("status", "error"),
        [
            pytest.param(401, CallbellAuthError, id="401"),
            pytest.param(404, CallbellAPIError, id="404"),
            pytest.param(429, CallbellRateLimitError, id="429"),
            pytest.param(503, CallbellServerError, id="503"),
            pytest.param(302, CallbellAPIError, id="302"),
        ],
    )
    def test_errors_match_the_sync_path(self, callbell_conn, requests_mock, async_answers, status, error):
        import httpx

        url = f"{BASE_URL}/messages/status/{UUID}"
        requests_mock.get(url, status_code=status, text='{"error": "nope"}')
        with pytest.raises(error) as sync_error:
            CallbellHook().get_message_status(UUID)
        answers, _ = async_answers
        answers.append(
            httpx.Response(status, text='{"error": "nope"}', headers={"Location": "https://x.test"})
        )
        with pytest.raises(error) as async_error:
            asyncio.run(CallbellHook().aget_message_status(UUID))
        assert type(async_error.value) is type(sync_error.value)
        assert str(async_error.value) == str(sync_error.value)
        assert async_error.value.status_code == status
        assert TOKEN not in str(async_error.value)

    def test_odd_answer_is_an_api_error(self, callbell_conn, async_answers):
        import httpx

        answers, _ = async_answers
        answers.append(httpx.Response(200, text="<html>OK</html>"))
        with pytest.raises(CallbellAPIError, match="expected a JSON answer") as excinfo:
            asyncio.run(CallbellHook().aget_message_status(UUID))
        assert not excinfo.value.is_transient

    def test_no_answer_is_a_transient_api_error(self, callbell_conn, async_answers):
        import httpx

        answers, _ = async_answers
        answers.append(httpx.ConnectError("connection refused"))
        with pytest.raises(CallbellAPIError, match=r"no answer from Callbell: .* \(ConnectError") as excinfo:
            asyncio.run(CallbellHook().aget_message_status(UUID))
        assert excinfo.value.status_code is None
        assert excinfo.value.is_transient

    def test_bad_uuid_sends_nothing(self, callbell_conn, async_answers):
        _, seen = async_answers
        with pytest.raises(CallbellValidationError, match="uuid must be"):
            asyncio.run(CallbellHook().aget_message_status("../auth/me"))
        assert seen == []

    @pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="BaseHook.aget_connection came with Airflow 3.1")
    def test_connection_read_once_without_the_sync_lookup(self, callbell_conn, async_answers):
        import httpx

        answers, _ = async_answers
        answers.extend(httpx.Response(200, json={"message": {"status": "sent"}}) for _ in range(2))
        hook = CallbellHook()

        async def twice() -> None:
            await hook.aget_message_status(UUID)
            await hook.aget_message_status(UUID)

        with (
            mock.patch.object(CallbellHook, "get_connection") as get_connection,
            mock.patch.object(CallbellHook, "aget_connection", wraps=CallbellHook.aget_connection) as aget,
        ):
            asyncio.run(twice())
        get_connection.assert_not_called()
        assert aget.call_count == 1

    def test_missing_token(self, monkeypatch, async_answers):
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps({"conn_type": "callbell"}))
        with pytest.raises(CallbellConnectionConfigError, match="has no API token"):
            asyncio.run(CallbellHook().aget_message_status(UUID))


class TestTransientErrors:
    @pytest.mark.parametrize(
        ("status_code", "transient"),
        [
            pytest.param(None, True, id="no-answer"),
            pytest.param(429, True, id="429"),
            pytest.param(500, True, id="500"),
            pytest.param(503, True, id="503"),
            pytest.param(400, False, id="400"),
            pytest.param(401, False, id="401"),
            pytest.param(404, False, id="404"),
            pytest.param(200, False, id="200-malformed"),
        ],
    )
    def test_is_transient(self, status_code, transient):
        assert CallbellAPIError("x", status_code=status_code).is_transient is transient
