"""The connection's rules, tested on the settings object alone: no hook, no Airflow connection lookup, no network.

The hook's own tests (tests/hooks/test_callbell_config.py) check that it applies these rules on first
use, before any request, on both paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_callbell.connection import (
    DEFAULT_TIMEOUT,
    CallbellSettings,
    connection_form_widgets,
    how_to_define,
    missing_connection,
    ui_field_behaviour,
)
from airflow_provider_callbell.exceptions import CallbellConnectionConfigError
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL
from airflow_provider_callbell.retry import RetryPolicy
from tests.compat import modules_added_by

TOKEN = "conn-token-81d2"


@dataclass
class Conn:
    """The four fields of an Airflow connection the settings read."""

    password: str | None = TOKEN
    host: str | None = None
    port: int | None = None
    schema: str | None = None


def settings(extra: dict[str, Any] | None = None, **fields: Any) -> CallbellSettings:
    """The settings of a connection with ``fields``; a port is a number, as Airflow parses it."""
    if fields.get("port") is not None:
        fields["port"] = int(fields["port"])
    return CallbellSettings.from_connection("callbell_default", Conn(**fields), extra or {})


class TestSettings:
    def test_defaults(self):
        made = settings()
        assert made.base_url == DEFAULT_BASE_URL
        assert (made.token, made.from_, made.channel_uuid) == (TOKEN, "whatsapp", None)
        assert made.timeout == DEFAULT_TIMEOUT
        assert made.budget == sum(DEFAULT_TIMEOUT)
        assert made.retry == RetryPolicy()
        assert made.at_api_root

    def test_repr_hides_the_token(self):
        assert TOKEN not in repr(settings())

    def test_extras_in_either_spelling_and_empty_ones_unset(self):
        made = settings(
            {"from": "telegram", "extra__callbell__channel_uuid": "chan", "timeout": "", "max_retries": None}
        )
        assert (made.from_, made.channel_uuid, made.timeout) == ("telegram", "chan", DEFAULT_TIMEOUT)
        assert settings(dict.fromkeys(CONN_FIELDS)).retry == RetryPolicy()

    def test_the_hook_arguments_win_over_the_extras(self):
        policy = RetryPolicy(max_retries=1)
        made = CallbellSettings.from_connection(
            "c", Conn(), {"timeout": 9, "max_retries": 5}, timeout=(1, 2), retry_policy=policy
        )
        assert (made.timeout, made.retry) == ((1.0, 2.0), policy)

    @pytest.mark.parametrize(
        ("extra", "timeout"),
        [
            pytest.param({"timeout": 7}, (7.0, 7.0), id="both"),
            pytest.param({"timeout": 7, "read_timeout": "2.5"}, (7.0, 2.5), id="read-wins"),
            pytest.param({"connect_timeout": 1}, (1.0, DEFAULT_TIMEOUT[1]), id="connect-only"),
        ],
    )
    def test_timeout_extras(self, extra, timeout):
        assert settings(extra).timeout == timeout

    def test_a_bad_extra_is_checked_even_when_the_hook_overrides_it(self):
        with pytest.raises(CallbellConnectionConfigError, match="extra 'timeout' must be a positive"):
            CallbellSettings.from_connection("c", Conn(), {"timeout": "soon"}, timeout=3)

    @pytest.mark.parametrize("timeout", [0, -1, "x", (1, 0)])
    def test_a_bad_timeout_argument(self, timeout):
        with pytest.raises(CallbellConnectionConfigError, match="must be a positive number of seconds"):
            CallbellSettings.from_connection("c", Conn(), {}, timeout=timeout)

    def test_bad_extra_names_the_connection_and_the_fix(self):
        with pytest.raises(CallbellConnectionConfigError) as excinfo:
            settings({"delivery": "twice"})
        assert str(excinfo.value).startswith("Connection 'callbell_default': delivery must be one of")
        assert "AIRFLOW_CONN_CALLBELL_DEFAULT" in str(excinfo.value)


class TestToken:
    def test_blanks_around_it_are_dropped(self):
        assert settings(password=f" {TOKEN}\n").token == TOKEN

    @pytest.mark.parametrize("password", [None, "", "  "])
    def test_missing(self, password):
        with pytest.raises(CallbellConnectionConfigError, match="has no API token") as excinfo:
            settings(password=password)
        assert how_to_define("callbell_default") in str(excinfo.value)

    @pytest.mark.parametrize("password", ["abcd 1234efgh", "abcd\n1234efgh", "abcd\u20191234efgh"])
    def test_one_http_cannot_carry_is_refused_without_showing_it(self, password):
        with pytest.raises(CallbellConnectionConfigError, match="holds a space") as excinfo:
            settings(password=password)
        assert "1234" not in str(excinfo.value)


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
    def test_built_from_host_port_and_schema(self, fields, url):
        assert settings(**fields).base_url == url

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
    def test_refused_with_the_fix(self, fields, match):
        with pytest.raises(CallbellConnectionConfigError, match=match) as excinfo:
            settings(**fields)
        assert str(excinfo.value).startswith("Connection 'callbell_default': ")
        assert 'set its host ("Base URL" in the Connections UI)' in str(excinfo.value)


class TestDefiningAConnection:
    def test_missing_connection_says_how_to_create_it(self):
        message = str(missing_connection("callbell_alerts"))
        assert message.startswith("Connection 'callbell_alerts' is not defined: define it with `airflow")
        assert "AIRFLOW_CONN_CALLBELL_ALERTS=" in message

    def test_form(self):
        assert set(connection_form_widgets()) == set(CONN_FIELDS)
        assert ui_field_behaviour()["relabeling"]["password"] == "API token (required)"


def test_reading_a_connection_imports_no_http_library():
    modules = "airflow_provider_callbell.connection, airflow_provider_callbell.exceptions"
    assert modules_added_by(modules, ["requests", "httpx", "urllib3"]) == []


class TestRateLimitStorage:
    def test_unset_by_default(self):
        assert settings().rate_limit_storage is None

    @pytest.mark.parametrize(
        "uri",
        [
            "redis://redis:6379/1",
            "rediss://:pw@redis.example:6380/0",
            "memory://",
            "redis+unix:///run/r.sock",
        ],
    )
    def test_a_storage_uri_is_kept_as_given(self, uri):
        assert settings({"rate_limit_storage": uri}).rate_limit_storage == uri

    @pytest.mark.parametrize("value", ["redis", "localhost:6379", "://x", 6379, ["redis://r"]])
    def test_anything_else_is_refused_naming_the_extra(self, value):
        with pytest.raises(
            CallbellConnectionConfigError, match="extra 'rate_limit_storage' must be a storage URI"
        ):
            settings({"rate_limit_storage": value})

    def test_airflow_masks_the_password_extra_and_not_the_uri(self):
        from tests.compat import redact

        extras = {"rate_limit_storage": "redis://redis:6379/1", "rate_limit_storage_password": "Redis-Secr3t"}
        assert redact(extras) == {
            "rate_limit_storage": "redis://redis:6379/1",
            "rate_limit_storage_password": "***",
        }

    def test_the_password_extra_is_kept_apart_and_out_of_the_repr(self):
        made = settings(
            {"rate_limit_storage": "redis://redis:6379/1", "rate_limit_storage_password": "Redis-Secr3t"}
        )
        assert made.rate_limit_storage == "redis://redis:6379/1"
        assert made.rate_limit_storage_password == "Redis-Secr3t"
        assert "Redis-Secr3t" not in repr(made)

    @pytest.mark.parametrize(
        ("extra", "match"),
        [
            pytest.param({}, "'rate_limit_storage' is not; set both", id="no-storage"),
            pytest.param(
                {"rate_limit_storage": "redis://:Redis-Other@redis:6379/1"}, "holds a password", id="userinfo"
            ),
            pytest.param(
                {"rate_limit_storage": "redis://redis:6379/1?password=Redis-Other"},
                "holds a password",
                id="query",
            ),
        ],
    )
    def test_the_password_extra_needs_a_storage_without_a_password(self, extra, match):
        with pytest.raises(CallbellConnectionConfigError, match=match) as excinfo:
            settings({**extra, "rate_limit_storage_password": "Redis-Secr3t"})
        assert "Redis-Secr3t" not in str(excinfo.value)
        assert "Redis-Other" not in str(excinfo.value)

    def test_neither_the_repr_nor_an_error_shows_the_storage_password(self):
        made = settings({"rate_limit_storage": "redis://:Redis-Secr3t@redis:6379/1"})
        assert "Redis-Secr3t" not in repr(made)
        with pytest.raises(CallbellConnectionConfigError) as excinfo:
            settings({"rate_limit_storage": "Redis-Secr3t@redis"})
        assert "Redis-Secr3t" not in str(excinfo.value)


class TestAllowPlainHttp:
    def test_off_by_default_so_plain_http_is_for_loopback_only(self):
        assert settings().allow_plain_http is False
        with pytest.raises(CallbellConnectionConfigError, match="uses plain http") as excinfo:
            settings(host="http://callbell-sandbox:8787/v1")
        assert "allow_plain_http" in str(excinfo.value)  # the error names the way out

    @pytest.mark.parametrize("flag", [True, "true", "True", "1", "yes"])
    def test_on_it_allows_a_non_loopback_http_host(self, flag):
        made = settings({"allow_plain_http": flag}, host="http://callbell-sandbox:8787/v1")
        assert (made.base_url, made.allow_plain_http, made.plain_http_to_network) == (
            "http://callbell-sandbox:8787/v1",
            True,
            True,
        )

    @pytest.mark.parametrize("flag", [False, "false", "0", "no"])
    def test_off_in_any_spelling(self, flag):
        with pytest.raises(CallbellConnectionConfigError, match="uses plain http"):
            settings({"allow_plain_http": flag}, host="http://callbell-sandbox:8787/v1")

    def test_it_changes_nothing_for_https_or_loopback(self):
        assert not settings({"allow_plain_http": True}).plain_http_to_network
        assert not settings({"allow_plain_http": True}, host="http://127.0.0.1:8787/v1").plain_http_to_network

    @pytest.mark.parametrize("flag", ["maybe", 2, ["true"]])
    def test_a_value_that_is_not_yes_or_no_is_refused(self, flag):
        with pytest.raises(
            CallbellConnectionConfigError, match="extra 'allow_plain_http' must be true or false"
        ):
            settings({"allow_plain_http": flag})

    def test_the_form_offers_it_as_a_choice_the_hook_reads(self):
        choices = [value for value in CONN_FIELDS["allow_plain_http"]["schema"]["enum"] if value is not None]
        for choice in choices:
            settings({"allow_plain_http": choice})  # every choice of the form is accepted
        assert "default" not in CONN_FIELDS["allow_plain_http"]["schema"]  # empty means false
        assert settings({"allow_plain_http": None}).allow_plain_http is False
