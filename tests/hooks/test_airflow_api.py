"""AirflowAPIHook: the ``airflow_api`` connection's rules, the token's life, and what errors may show."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest

from airflow_provider_callbell.exceptions import AirflowAPIError, CallbellConnectionConfigError
from airflow_provider_callbell.hooks.airflow_api import AirflowAPIHook, api_base_url, hitl_path
from airflow_provider_callbell.version_compat import mask_secrets
from tests.helpers import FakeAirflowAPI

BASE = "https://airflow.example.com"
PASSWORD = "s3cret-airflow-password"
TOKEN = "eyJhbGciOi.airflow-token.sig"
RUN_ID = "manual__2026-12-03T12:00:00+00:00"
DETAIL_URL = BASE + hitl_path("nightly_report", RUN_ID, "approve", -1)


def set_api_connection(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    conn = {"conn_type": "http", "host": BASE, "login": "hitl-bridge", "password": PASSWORD, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(conn))


@pytest.fixture
def api_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    set_api_connection(monkeypatch)


@pytest.fixture
def token_ok(requests_mock: Any, api_conn: None) -> Any:
    return requests_mock.post(f"{BASE}/auth/token", status_code=201, json={"access_token": TOKEN})


class TestBaseURL:
    @pytest.mark.parametrize(
        ("host", "port", "schema", "allow_plain_http", "expected"),
        [
            pytest.param(
                "http://127.0.0.1:8080", None, None, False, "http://127.0.0.1:8080", id="loopback-http"
            ),
            pytest.param(
                "127.0.0.1", 8080, None, False, "http://127.0.0.1:8080", id="loopback-without-scheme"
            ),
            pytest.param("localhost", 8080, "http", False, "http://localhost:8080", id="schema-as-scheme"),
            pytest.param(
                "airflow.example.com", None, None, False, "https://airflow.example.com", id="remote-https"
            ),
            pytest.param(
                "https://example.com/airflow/", None, None, False, "https://example.com/airflow", id="prefix"
            ),
            pytest.param(
                "http://airflow.internal:8080", None, None, True, "http://airflow.internal:8080", id="allowed"
            ),
        ],
    )
    def test_accepted(
        self, host: str, port: int | None, schema: str | None, allow_plain_http: bool, expected: str
    ) -> None:
        assert api_base_url("airflow_api", host, port, schema, allow_plain_http) == expected

    @pytest.mark.parametrize(
        ("host", "match"),
        [
            pytest.param("http://airflow.example.com", "plain http", id="remote-http"),
            pytest.param("", "no host", id="empty"),
            pytest.param("https://u:pw@airflow.example.com", "user info", id="user-info"),
            pytest.param("http://127.0.0.1:8080/api/v2", "ends with the API's path", id="api-path"),
            pytest.param("ftp://airflow.example.com", "not an http", id="ftp"),
            pytest.param("https://airflow.example.com/?x=1", "not an http", id="query"),
        ],
    )
    def test_refused(self, host: str, match: str) -> None:
        with pytest.raises(CallbellConnectionConfigError, match=match) as caught:
            api_base_url("airflow_api", host, None, None, False)
        assert str(caught.value).startswith("Connection 'airflow_api'")
        assert "pw" not in str(caught.value).replace("https://u:pw@", "")  # never echoes user info
        assert "u:pw" not in str(caught.value)

    def test_http_allowed_by_the_extra_with_a_warning(self, monkeypatch: pytest.MonkeyPatch) -> None:
        log = mock.Mock()
        monkeypatch.setattr(AirflowAPIHook, "log", log)
        set_api_connection(
            monkeypatch, host="http://airflow.internal:8080", extra={"allow_plain_http": "true"}
        )
        assert AirflowAPIHook().settings.base_url == "http://airflow.internal:8080"
        log.warning.assert_called_once()
        warned = log.warning.call_args.args[0] % log.warning.call_args.args[1:]
        assert "allows plain http (extra allow_plain_http)" in warned
        assert "password and token travel unencrypted to http://airflow.internal:8080" in warned
        assert PASSWORD not in warned

    def test_the_callbell_connections_name_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        set_api_connection(monkeypatch, host="http://airflow.internal:8080", extra={"allow_http": "true"})
        with pytest.raises(CallbellConnectionConfigError, match="plain http"):
            AirflowAPIHook().settings  # noqa: B018

    @pytest.mark.parametrize("junk", ["sure", "2", ""])
    def test_a_junk_flag_is_refused(self, monkeypatch: pytest.MonkeyPatch, junk: str) -> None:
        set_api_connection(monkeypatch, extra={"allow_plain_http": junk})
        with pytest.raises(
            CallbellConnectionConfigError, match="extra 'allow_plain_http' must be true or false"
        ) as caught:
            AirflowAPIHook().settings  # noqa: B018
        assert str(caught.value).startswith("Connection 'airflow_api'")

    @pytest.mark.parametrize("missing", ["login", "password"])
    def test_a_user_is_required(self, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
        set_api_connection(monkeypatch, **{missing: None})
        with pytest.raises(
            CallbellConnectionConfigError, match="login and password of the Airflow user"
        ) as caught:
            AirflowAPIHook().settings  # noqa: B018
        assert PASSWORD not in str(caught.value)
        assert "airflow connections add airflow_api --conn-type http" in str(caught.value)

    def test_an_undefined_connection_says_how_to_define_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_OPS", raising=False)
        with pytest.raises(CallbellConnectionConfigError, match=r"'airflow_ops' .* is not defined") as caught:
            AirflowAPIHook("airflow_ops").settings  # noqa: B018
        assert "AIRFLOW_CONN_AIRFLOW_OPS=" in str(caught.value)

    def test_the_password_is_not_in_the_settings_repr(self, api_conn: None) -> None:
        assert PASSWORD not in repr(AirflowAPIHook().settings)


class TestRequests:
    def test_logs_in_once_and_sends_the_token(self, requests_mock: Any, token_ok: Any) -> None:
        requests_mock.get(DETAIL_URL, json={"options": ["Approve"]})
        hook = AirflowAPIHook()
        hook.get_hitl_detail("nightly_report", RUN_ID, "approve")
        hook.get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert token_ok.call_count == 1
        assert token_ok.last_request.json() == {"username": "hitl-bridge", "password": PASSWORD}
        gets = [r for r in requests_mock.request_history if r.method == "GET"]
        assert [r.headers["Authorization"] for r in gets] == [f"Bearer {TOKEN}"] * 2
        assert "Authorization" not in token_ok.last_request.headers

    def test_run_ids_are_quoted(self) -> None:
        assert hitl_path("d", RUN_ID, "t", 2) == (
            "/api/v2/dags/d/dagRuns/manual__2026-12-03T12%3A00%3A00%2B00%3A00/taskInstances/t/2/hitlDetails"
        )

    def test_no_request_yet_is_none(self, requests_mock: Any, token_ok: Any) -> None:
        requests_mock.get(DETAIL_URL, status_code=404, json={"detail": "does not exist"})
        assert AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve") is None

    def test_a_refused_token_is_fetched_again_once(self, requests_mock: Any, token_ok: Any) -> None:
        requests_mock.get(DETAIL_URL, [{"status_code": 401, "json": {}}, {"json": {"options": ["A"]}}])
        assert AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve") == {"options": ["A"]}
        assert token_ok.call_count == 2

    def test_a_refused_login_names_the_user_not_the_password(
        self, requests_mock: Any, api_conn: None
    ) -> None:
        requests_mock.post(f"{BASE}/auth/token", status_code=401, text=f"bad credentials for {PASSWORD}")
        with pytest.raises(AirflowAPIError, match="refused the login of user 'hitl-bridge'") as caught:
            AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert caught.value.status_code == 401
        assert PASSWORD not in str(caught.value)
        assert not caught.value.is_transient

    @pytest.mark.parametrize(
        "password", ['pa"ss\\wörd-1', "plain-password-1"], ids=["json-escaped-chars", "plain"]
    )
    def test_no_body_is_kept_from_a_refused_login(
        self, requests_mock: Any, monkeypatch: pytest.MonkeyPatch, password: str
    ) -> None:
        """FastAPI's 422 echoes the login JSON-escaped: a plain replace of the password misses it."""
        set_api_connection(monkeypatch, password=password)
        echoed = json.dumps({"detail": [{"input": {"username": "hitl-bridge", "password": password}}]})
        requests_mock.post(f"{BASE}/auth/token", status_code=422, text=echoed)
        with pytest.raises(AirflowAPIError) as caught:
            AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert caught.value.status_code == 422
        assert caught.value.body == ""
        for shown in (str(caught.value), repr(caught.value), caught.value.body):
            assert password not in shown
            assert json.dumps(password)[1:-1] not in shown

    @pytest.mark.parametrize(
        "token", ["abc\r\nX-Evil: 1", "tok en", "tök"], ids=["header-injection", "space", "non-ascii"]
    )
    def test_a_token_that_is_not_a_jwt_is_refused_unquoted(
        self, requests_mock: Any, api_conn: None, token: str
    ) -> None:
        requests_mock.post(f"{BASE}/auth/token", status_code=201, json={"access_token": token})
        detail = requests_mock.get(DETAIL_URL, json={})
        with pytest.raises(AirflowAPIError, match="not a JWT") as caught:
            AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert token not in str(caught.value)
        assert detail.call_count == 0  # never sent

    def test_the_token_is_registered_with_the_secrets_masker(self, requests_mock: Any, token_ok: Any) -> None:
        requests_mock.get(DETAIL_URL, json={"options": ["Approve", "Reject"]})
        AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert TOKEN not in mask_secrets(f"Authorization: Bearer {TOKEN}")

    def test_a_server_echoing_the_token_is_redacted(self, requests_mock: Any, token_ok: Any) -> None:
        requests_mock.patch(DETAIL_URL, status_code=400, text=f"Authorization: Bearer {TOKEN} was invalid")
        with pytest.raises(AirflowAPIError) as caught:
            AirflowAPIHook().submit_hitl_response(
                "nightly_report", RUN_ID, "approve", chosen_options=["Nope"]
            )
        assert TOKEN not in str(caught.value)
        assert TOKEN not in caught.value.body
        assert caught.value.status_code == 400

    def test_redirects_are_not_followed(self, requests_mock: Any, token_ok: Any) -> None:
        elsewhere = requests_mock.get("https://evil.example.com/steal", json={})
        requests_mock.get(DETAIL_URL, status_code=302, headers={"Location": "https://evil.example.com/steal"})
        with pytest.raises(AirflowAPIError, match="unexpected redirect"):
            AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert elsewhere.call_count == 0

    @pytest.mark.parametrize(("status", "transient"), [(409, False), (403, False), (500, True), (503, True)])
    def test_statuses(self, requests_mock: Any, token_ok: Any, status: int, transient: bool) -> None:
        requests_mock.patch(DETAIL_URL, status_code=status, json={"detail": "x"})
        with pytest.raises(AirflowAPIError) as caught:
            AirflowAPIHook().submit_hitl_response("nightly_report", RUN_ID, "approve", chosen_options=["A"])
        assert (caught.value.status_code, caught.value.is_transient) == (status, transient)

    def test_no_answer_is_transient_and_shows_no_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        set_api_connection(monkeypatch, host="http://127.0.0.1:9")  # nothing listens on the discard port
        with pytest.raises(AirflowAPIError, match="no answer from the Airflow API server") as caught:
            AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")
        assert caught.value.status_code is None
        assert caught.value.is_transient
        assert PASSWORD not in str(caught.value)

    def test_an_answer_that_is_not_an_object(self, requests_mock: Any, token_ok: Any) -> None:
        requests_mock.get(DETAIL_URL, json=["not", "an", "object"])
        with pytest.raises(AirflowAPIError, match="expected a JSON object"):
            AirflowAPIHook().get_hitl_detail("nightly_report", RUN_ID, "approve")


class TestAsync:
    def test_reads_the_request_and_refetches_an_expired_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = FakeAirflowAPI(["Approve", "Reject"])
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())

        async def read_twice() -> list[Any]:
            hook = AirflowAPIHook()
            try:
                first = await hook.aget_hitl_detail("d", RUN_ID, "approve")
                fake.token = "rotated-token-5c1e"
                second = await hook.aget_hitl_detail("d", RUN_ID, "approve")
            finally:
                await hook.aclose()
            return [first, second]

        try:
            first, second = asyncio.run(read_twice())
        finally:
            fake.close()
        assert first["options"] == second["options"] == ["Approve", "Reject"]
        assert len(fake.logins) == 2
        assert fake.tokens_seen[-1] == "Bearer rotated-token-5c1e"

    def test_no_request_yet_and_a_refused_login(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = FakeAirflowAPI(["Approve", "Reject"])
        fake.detail = None
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json())

        async def read() -> Any:
            hook = AirflowAPIHook()
            try:
                return await hook.aget_hitl_detail("d", RUN_ID, "approve")
            finally:
                await hook.aclose()

        try:
            assert asyncio.run(read()) is None
            monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", fake.connection_json(password="wrong-password-1"))
            with pytest.raises(AirflowAPIError, match="refused the login") as caught:
                asyncio.run(read())
        finally:
            fake.close()
        assert "wrong-password-1" not in str(caught.value)
