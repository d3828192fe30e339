"""The connection as the hook reads it: fail-fast configuration errors that say how to fix them."""

from __future__ import annotations

import asyncio

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
        params = CallbellHook()._conn_params
        assert (params.from_, params.channel_uuid, params.timeout) == ("whatsapp", None, DEFAULT_TIMEOUT)
        assert params.retry == RetryPolicy()
        set_connection(monkeypatch, extra={f"extra__callbell__{name}": "" for name in CONN_FIELDS})
        assert CallbellHook()._conn_params.retry == RetryPolicy()


def base_url(monkeypatch: pytest.MonkeyPatch, **fields: object) -> str:
    set_connection(monkeypatch, **fields)
    return CallbellHook()._conn_params.base_url


class TestBaseUrl:
    @pytest.mark.parametrize(
        ("fields", "url"),
        [
            pytest.param({}, DEFAULT_BASE_URL, id="default"),
            pytest.param({"host": "https://API.callbell.eu/v1/"}, DEFAULT_BASE_URL, id="case-and-slash"),
            pytest.param({"host": "api.callbell.eu", "schema": "v1"}, DEFAULT_BASE_URL, id="uri-path"),
            pytest.param({"host": "api.callbell.eu/v1"}, DEFAULT_BASE_URL, id="bare-host-means-https"),
            pytest.param(
                {"host": "127.0.0.1:8787/v1", "schema": "http"}, "http://127.0.0.1:8787/v1", id="schema-http"
            ),
            pytest.param(
                {"host": "http://localhost", "port": 8787, "schema": "v1"},
                "http://localhost:8787/v1",
                id="uri-with-protocol-host",
            ),
            pytest.param(
                {"host": DEFAULT_BASE_URL, "port": 443, "schema": "https"}, DEFAULT_BASE_URL, id="all-agree"
            ),
            pytest.param({"port": 443}, DEFAULT_BASE_URL, id="port-443-only"),
            pytest.param({"port": 8443}, "https://api.callbell.eu:8443/v1", id="port-only"),
            pytest.param({"host": "http://[::1]:9000/v1"}, "http://[::1]:9000/v1", id="ipv6-loopback"),
            pytest.param({"host": f" {DEFAULT_BASE_URL}\n"}, DEFAULT_BASE_URL, id="pasted-with-blanks"),
            pytest.param(
                {"host": "http://127.0.0.1/v1", "port": "8787"}, "http://127.0.0.1:8787/v1", id="port-as-text"
            ),
            pytest.param(
                {"host": "http://127.0.0.1:8787/v1", "port": 0}, "http://127.0.0.1:8787/v1", id="ui-port-0"
            ),
        ],
    )
    def test_built_from_host_port_and_schema(self, monkeypatch, fields, url):
        assert base_url(monkeypatch, **fields) == url

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
        assert CallbellHook()._conn_params.base_url == url

    @pytest.mark.parametrize(
        ("fields", "match"),
        [
            pytest.param(
                {"host": "localhost:8788/v1"},
                "has no scheme; a local server such as the sandbox is plain http: use 'http://localhost:8788/v1'",
                id="scheme-less-localhost",
            ),
            pytest.param(
                {"host": "127.0.0.1:8787/v1"}, "use 'http://127.0.0.1:8787/v1'", id="scheme-less-127.0.0.1"
            ),
            pytest.param({"host": "[::1]:8787"}, r"use 'http://\[::1\]:8787'", id="scheme-less-ipv6"),
            pytest.param(
                {"host": "localhost", "port": 8787, "schema": "v1"},
                "use 'http://localhost:8787/v1'",
                id="uri-without-protocol",
            ),
            pytest.param(
                {"host": DEFAULT_BASE_URL, "schema": "http"},
                "says 'https' but the schema field says 'http'",
                id="two-schemes",
            ),
            pytest.param(
                {"host": DEFAULT_BASE_URL, "schema": "v2"},
                "has a path and the schema field adds 'v2'",
                id="two-paths",
            ),
            pytest.param(
                {"host": "https://api.callbell.eu:8443/v1", "port": 443},
                "says port 8443 but the port field says 443",
                id="two-ports",
            ),
            pytest.param(
                {"host": "api.callbell.eu", "schema": "http"}, "uses plain http", id="schema-http-remote"
            ),
            pytest.param({"host": "http://10.0.0.5/v1"}, "uses plain http", id="http-remote"),
            pytest.param(
                {"host": "https://api.callbell.eu/v1?x=1"}, r"not an http\(s\) base URL", id="query"
            ),
            pytest.param({"host": "ftp://api.callbell.eu/v1"}, r"not an http\(s\) base URL", id="ftp"),
            pytest.param({"host": "https://api.callbell.eu:99999/v1"}, "is not a URL", id="bad-port"),
            pytest.param({"host": "https://[::1/v1"}, "is not a URL", id="bad-ipv6"),
        ],
    )
    def test_refused_with_the_fix(self, monkeypatch, requests_mock, fields, match):
        set_connection(monkeypatch, **fields)
        with pytest.raises(CallbellConnectionConfigError, match=match) as excinfo:
            CallbellHook().send_message("+31612345678", content={"text": "x"})
        assert str(excinfo.value).startswith("Connection 'callbell_default': ")
        assert 'set its host ("Base URL" in the Connections UI)' in str(excinfo.value)
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
