"""The connection as the hook reads it: fail-fast configuration errors that say how to fix them."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellConnectionConfigError
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL
from airflow_provider_callbell.hooks.callbell import DEFAULT_TIMEOUT, CallbellHook
from airflow_provider_callbell.retry import RetryPolicy
from airflow_provider_callbell.version_compat import AirflowFailException
from tests.helpers import BASE_URL, TOKEN, UUID, set_connection

HOW_TO_ADD = "`airflow connections add {0} --conn-type callbell --conn-password <API token>`"


class TestConfigErrorsFailFast:
    def test_is_an_airflow_fail_exception_without_an_http_status(self):
        err = CallbellConnectionConfigError("x")
        # AirflowFailException: the task fails at once, a retry would read the same connection.
        assert isinstance(err, AirflowFailException)
        assert err.status_code is None  # AirflowException says HTTP 500; no request was made

    def test_missing_connection_says_how_to_create_it(self, monkeypatch, requests_mock):
        monkeypatch.delenv("AIRFLOW_CONN_CALLBELL_ALERTS", raising=False)
        with pytest.raises(CallbellConnectionConfigError) as excinfo:
            CallbellHook("callbell_alerts").send_message("+31612345678", content={"text": "x"})
        message = str(excinfo.value)
        assert message.startswith("Connection 'callbell_alerts' is not defined: ")
        assert HOW_TO_ADD.format("callbell_alerts") in message
        assert (
            """AIRFLOW_CONN_CALLBELL_ALERTS='{"conn_type": "callbell", "password": "<API token>"}'"""
            in message
        )
        assert excinfo.value.__cause__ is None
        assert requests_mock.call_count == 0

    def test_missing_connection_on_the_async_path(self, monkeypatch):
        monkeypatch.delenv("AIRFLOW_CONN_CALLBELL_ALERTS", raising=False)
        with pytest.raises(CallbellConnectionConfigError, match="'callbell_alerts' is not defined"):
            asyncio.run(CallbellHook("callbell_alerts").aget_message_status(UUID))

    def test_missing_connection_in_the_test_button(self, monkeypatch):
        monkeypatch.delenv("AIRFLOW_CONN_CALLBELL_ALERTS", raising=False)
        ok, message = CallbellHook("callbell_alerts").test_connection()
        assert not ok
        assert "is not defined" in message

    def test_missing_token_says_how_to_set_it(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, password="")
        with pytest.raises(CallbellConnectionConfigError) as excinfo:
            CallbellHook().list_templates()
        assert "'callbell_default' has no API token: set its password (\"API token\"" in str(excinfo.value)
        assert HOW_TO_ADD.format("callbell_default") in str(excinfo.value)
        assert requests_mock.call_count == 0

    def test_a_token_pasted_with_a_line_break_is_used_without_it(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, password=f" {TOKEN}\n")
        sent = requests_mock.get(f"{BASE_URL}/templates", json={"templates": []})
        CallbellHook().list_templates()
        assert sent.last_request.headers["Authorization"] == f"Bearer {TOKEN}"

    @pytest.mark.parametrize(
        "token",
        [
            pytest.param("abcd 1234efgh", id="space"),
            pytest.param("abcd\n1234efgh", id="line-break"),
            pytest.param("abcd\u20191234efgh", id="curly-quote"),
        ],
    )
    def test_a_token_http_cannot_carry_is_a_config_error_that_does_not_show_it(
        self, monkeypatch, requests_mock, token
    ):
        set_connection(monkeypatch, password=token)
        with pytest.raises(
            CallbellConnectionConfigError, match="holds a space, a line break or a non-ASCII"
        ) as excinfo:
            CallbellHook().list_templates()
        assert "1234" not in str(excinfo.value)
        assert requests_mock.call_count == 0

    @pytest.mark.parametrize(
        ("extra", "match"),
        [
            pytest.param({"timeout": "soon"}, "extra 'timeout' must be a positive number", id="timeout"),
            pytest.param({"max_retries": "many"}, "extra 'max_retries' must be a int", id="max-retries"),
            pytest.param({"max_retries": -1}, "max_retries must be a whole number >= 0", id="negative"),
            pytest.param({"delivery": "twice"}, "delivery must be one of", id="delivery"),
            pytest.param(
                {"allow_plain_http": "maybe"}, "extra 'allow_plain_http' must be true", id="plain-http"
            ),
            pytest.param({"rate_limit_storage": "redis"}, "extra 'rate_limit_storage' must be", id="storage"),
        ],
    )
    def test_bad_extra_names_connection_and_fix(self, monkeypatch, requests_mock, extra, match):
        set_connection(monkeypatch, extra=extra)
        with pytest.raises(CallbellConnectionConfigError, match=match) as excinfo:
            CallbellHook().list_templates()
        message = str(excinfo.value)
        assert message.startswith("Connection 'callbell_default': ")
        assert 'fix it in the Connections UI or in the "extra" JSON' in message
        assert requests_mock.call_count == 0

    def test_unset_extras_stored_as_null_mean_defaults(self, monkeypatch):
        # Airflow 3's form stores every extra field left empty as null (2.x as ""): both mean unset.
        set_connection(monkeypatch, extra=dict.fromkeys(CONN_FIELDS))
        params = CallbellHook()._settings
        assert (params.from_, params.channel_uuid, params.timeout) == ("whatsapp", None, DEFAULT_TIMEOUT)
        assert params.retry == RetryPolicy()
        set_connection(monkeypatch, extra={f"extra__callbell__{name}": "" for name in CONN_FIELDS})
        assert CallbellHook()._settings.retry == RetryPolicy()


class TestBaseUrl:
    """The rules themselves are tested in tests/test_connection.py; here, the hook applies them."""

    @pytest.mark.parametrize(
        ("uri", "url"),
        [
            pytest.param(f"callbell://:{TOKEN}@api.callbell.eu/v1", DEFAULT_BASE_URL, id="host-and-path"),
            pytest.param(
                f"callbell://http://:{TOKEN}@localhost:8787/v1",
                "http://localhost:8787/v1",
                id="with-protocol",
            ),
            pytest.param(
                f"callbell://:{TOKEN}@http%3A%2F%2F127.0.0.1%3A8787%2Fv1",
                "http://127.0.0.1:8787/v1",
                id="encoded",
            ),
        ],
    )
    def test_connection_uris(self, monkeypatch, uri, url):
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", uri)
        assert CallbellHook()._settings.base_url == url

    def test_refused_with_the_fix_before_any_request(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, host="http://10.0.0.5/v1")
        with pytest.raises(CallbellConnectionConfigError, match="uses plain http") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert str(excinfo.value).startswith("Connection 'callbell_default': ")
        assert requests_mock.call_count == 0

    @pytest.mark.parametrize(
        "host",
        [
            "https://user:Secr3tPart@api.callbell.eu/v1",
            "https://:Secr3tPart@api.callbell.eu/v1",
            "Secr3tPart@api.callbell.eu/v1",
            "https://user:Secr3t/Part@api.callbell.eu/v1",  # a '/' in the password breaks URL parsing
        ],
    )
    def test_user_info_is_refused_without_showing_it(self, monkeypatch, requests_mock, host):
        set_connection(monkeypatch, host=host)
        hook = CallbellHook()
        with pytest.raises(CallbellConnectionConfigError, match="user info") as excinfo:
            hook.send_message("+31612345678", content={"text": "x"})
        shown = f"{excinfo.value} {excinfo.value!r} {hook.__dict__!r}"
        assert "Secr3t" not in shown
        assert "Part" not in shown
        assert requests_mock.call_count == 0


class TestNotFoundHint:
    def test_404_from_a_base_url_without_v1_says_so(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, host="http://127.0.0.1:8787")
        requests_mock.get("http://127.0.0.1:8787/templates", status_code=404, text="Not Found")
        with pytest.raises(CallbellAPIError) as excinfo:
            CallbellHook().list_templates()
        assert excinfo.value.status_code == 404
        assert "the base URL 'http://127.0.0.1:8787' does not end with /v1" in str(excinfo.value)

    def test_404_from_the_right_base_url_has_no_such_hint(self, monkeypatch, requests_mock):
        set_connection(monkeypatch)
        requests_mock.delete(
            f"{DEFAULT_BASE_URL}/messages/{UUID}", status_code=404, json={"error": "not found"}
        )
        with pytest.raises(CallbellAPIError) as excinfo:
            CallbellHook().delete_message(UUID)
        assert excinfo.value.status_code == 404
        assert "does not end with /v1" not in str(excinfo.value)


class _Log:
    """Stands in for the hook's logger (Airflow's task logger bypasses caplog)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str):  # type: ignore[no-untyped-def]
        return lambda msg, *args, **_: self.lines.append(f"{level.upper()} {msg % args}")


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


class TestAllowPlainHttp:
    """A sandbox on a trusted network (a docker-compose service) is a non-loopback http:// host."""

    SANDBOX = "http://callbell-sandbox:8787/v1"

    def test_refused_without_the_extra_before_any_request(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, host=self.SANDBOX)
        with pytest.raises(CallbellConnectionConfigError, match="uses plain http") as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert '"allow_plain_http": true' in str(excinfo.value)
        assert TOKEN not in str(excinfo.value)
        assert requests_mock.call_count == 0

    def test_with_the_extra_the_hook_sends_and_warns_each_time_a_hook_starts(
        self, monkeypatch, requests_mock
    ):
        log = _Log()
        monkeypatch.setattr(CallbellHook, "log", log)
        set_connection(monkeypatch, host=self.SANDBOX, extra={"allow_plain_http": True})
        sent = requests_mock.post(f"{self.SANDBOX}/messages/send", json={"message": {"uuid": UUID}})
        for _ in range(2):
            hook = CallbellHook()
            hook.send_message("+31612345678", content={"text": "x"})
            hook.send_message("+31612345678", content={"text": "y"})
        assert sent.call_count == 4
        warnings = [line for line in log.lines if line.startswith("WARNING")]
        assert len(warnings) == 2  # once per hook, not per request
        assert (
            f"allows plain http (extra allow_plain_http): the API token travels unencrypted to {self.SANDBOX}"
            in warnings[0]
        )
        assert TOKEN not in repr(log.lines)

    def test_on_the_async_path_too(self, monkeypatch, async_answers):
        import httpx

        set_connection(monkeypatch, host=self.SANDBOX, extra={"allow_plain_http": "true"})
        answers, seen = async_answers
        answers.append(httpx.Response(200, json={"message": {"uuid": UUID, "status": "sent"}}))
        asyncio.run(CallbellHook().aget_message_status(UUID))
        assert str(seen[0].url) == f"{self.SANDBOX}/messages/status/{UUID}"

    def test_a_sandbox_reached_by_a_non_loopback_address(self, monkeypatch):
        from airflow_provider_callbell.sandbox import CallbellSandbox

        address = _non_loopback_address()
        if address is None:
            pytest.skip("this machine has no non-loopback IPv4 address to reach the sandbox by")
        # Listening on that address, the sandbox answers to it (its Host check allows its own host).
        with CallbellSandbox(host=address) as sandbox:
            connection = {"conn_type": "callbell", "host": sandbox.url, "password": sandbox.token}
            assert sandbox.url.startswith(f"http://{address}:")
            monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps(connection))
            with pytest.raises(CallbellConnectionConfigError, match="uses plain http"):
                CallbellHook().send_message("+31612345678", content={"text": "refused"})
            connection["extra"] = {"allow_plain_http": True}
            monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps(connection))
            sent = CallbellHook().send_message("+31612345678", content={"text": "through the network"})
            assert [m["uuid"] for m in sandbox.messages] == [sent["uuid"]]
