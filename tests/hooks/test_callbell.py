from __future__ import annotations

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
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.conftest import BASE_URL, SEND_URL, TOKEN, UUID, set_connection


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
        assert behaviour["relabeling"]["password"] == "API token"
        assert {"login", "schema", "port", "extra"} <= set(behaviour["hidden_fields"])
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
        with pytest.raises(CallbellConnectionConfigError, match="host must be an http"):
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
        assert adapter.last_request.timeout == 7.0

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
    def test_bad_timeout_extra(self, monkeypatch, timeout):
        set_connection(monkeypatch, extra={"timeout": timeout})
        with pytest.raises(CallbellConnectionConfigError, match="timeout must be a"):
            CallbellHook().list_templates()

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

    def test_token_is_masked_for_airflow_logs(self, callbell_conn):
        with mock.patch("airflow_provider_callbell.hooks.callbell.mask_secret") as mask_secret:
            _ = CallbellHook()._conn_params
        mask_secret.assert_called_once_with(TOKEN)

    def test_conn_params_repr_hides_token(self, callbell_conn):
        assert TOKEN not in repr(CallbellHook()._conn_params)


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
        CallbellHook().send_message("+31612345678", type_, content)
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
            CallbellHook().send_message("+31612345678", "image", {"url": "not a url"})
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

    def test_no_answer_is_an_api_error_without_status(self, callbell_conn, requests_mock):
        requests_mock.post(SEND_URL, exc=requests.ConnectionError("connection refused"))
        with pytest.raises(CallbellAPIError, match="no answer from Callbell") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert excinfo.value.status_code is None

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
