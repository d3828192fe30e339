"""The Connections UI as a running Airflow serves it: the API server on 3.x, the web server on 2.x.

Each test starts the real server on a free loopback port in the session's throwaway AIRFLOW_HOME,
in its own process group, and kills the whole group afterwards, even when the test fails.
"""

from __future__ import annotations

import ast
import json
import re
from html import unescape
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_callbell.get_provider_info import CONN_FIELDS
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_VERSION
from tests.integration.helpers import webserver

if TYPE_CHECKING:
    from airflow_provider_callbell.sandbox import CallbellSandbox
    from tests.integration.helpers import Airflow

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the API server and hook_meta are Airflow 3")
def test_api_server_hook_meta_describes_the_callbell_form(airflow_api_server: str) -> None:
    base_url = airflow_api_server
    token = requests.get(f"{base_url}/auth/token", timeout=10).json()["access_token"]
    answer = requests.get(
        f"{base_url}/ui/connections/hook_meta", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    (meta,) = [entry for entry in answer.json() if entry["connection_type"] == "callbell"]

    assert meta["hook_class_name"] == "airflow_provider_callbell.hooks.callbell.CallbellHook"
    assert meta["hook_name"] == "Callbell"
    assert meta["standard_fields"] == {
        "description": None,
        "url_schema": {"hidden": True, "title": None, "placeholder": None},
        "host": {"hidden": False, "title": "Base URL", "placeholder": "https://api.callbell.eu/v1"},
        "port": {"hidden": False, "title": "Port (optional)", "placeholder": "443"},
        "login": {"hidden": True, "title": None, "placeholder": None},
        "password": {
            "hidden": False,
            "title": "API token (required)",
            "placeholder": "API key from Callbell's dashboard",
        },
    }
    extra = meta["extra_fields"]
    assert {name: field["schema"]["title"] for name, field in extra.items()} == {
        name: spec["label"] for name, spec in CONN_FIELDS.items()
    }
    assert extra["timeout"]["schema"]["title"] == "Timeout (seconds)"
    assert extra["from"]["value"] == "whatsapp"
    # 3.2+ passes the conn-fields enum on as is; 3.0/3.1 derive it from the hook's AnyOf validator.
    assert set(extra["from"]["schema"]["enum"]) - {None} == {"whatsapp", "telegram", "instagram", "facebook"}
    # A number on 3.2+; 3.0/3.1 show the hook's decimal text field as a string.
    assert extra["timeout"]["schema"]["type"] in (["number", "null"], ["string", "null"])


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="the Flask-AppBuilder web server is Airflow 2.x")
def test_webserver_connection_form_offers_callbell(airflow: Airflow) -> None:
    # Anonymous visitors get the Admin role, so the form page needs no login in this throwaway home.
    with webserver(airflow) as base_url:
        page = requests.get(f"{base_url}/connection/add", timeout=60)
    assert page.status_code == 200, page.text[-2000:]
    html = page.text

    assert re.search(r'<option value="callbell">\s*Callbell\s*</option>', html)
    behaviours = json.loads(
        unescape(re.search(r'<script id="field_behaviours" type="text/json">(.*?)</script>', html, re.S)[1])
    )
    assert behaviours["callbell"] == {
        "hidden_fields": ["login", "schema", "extra"],
        "relabeling": {"password": "API token (required)", "host": "Base URL", "port": "Port (optional)"},
        "placeholders": {
            "host": "https://api.callbell.eu/v1",
            "port": "443",
            "password": "API key from Callbell's dashboard",
        },
    }
    # Airflow writes this list as a Python repr, not JSON.
    testable = unescape(
        re.search(r'<script id="testable_connection_types" type="text/json">(.*?)</script>', html)[1]
    )
    assert "callbell" in ast.literal_eval(testable)
    for name, spec in CONN_FIELDS.items():
        field_id = f"extra__callbell__{name}"
        assert re.search(rf'<label for="{field_id}"[^>]*>\s*{re.escape(spec["label"])}\s*</label>', html)
        # Flask-AppBuilder's Bootstrap widget, as on the official providers' fields.
        assert f'<input class="form-control" id="{field_id}" name="{field_id}"' in html
        assert spec["description"] in unescape(html)


def _ui_test_body(stored: dict[str, Any]) -> dict[str, Any]:
    """The request body the 3.3.2 UI's Test button (connections list) builds from a listed connection.

    Copied from the UI bundle (``airflow/ui/dist/assets/index-*.js``): ``port: Number(n.port)``, which
    is ``0`` for a connection without a port; the password as listed (masked).
    """
    return {
        "connection_id": stored["connection_id"],
        "conn_type": stored["conn_type"],
        "description": stored["description"] or "",
        "extra": stored["extra"] or "{}",
        "host": stored["host"] or "",
        "login": stored["login"] or "",
        "password": stored["password"] or "",
        "port": stored["port"] or 0,
        "schema": stored["schema"] or "",
    }


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the API server's Test button is Airflow 3")
def test_api_server_test_button_with_and_without_a_port(
    airflow_api_server: str, callbell_sandbox: CallbellSandbox
) -> None:
    base_url = airflow_api_server  # started with AIRFLOW__CORE__TEST_CONNECTION=Enabled
    token = requests.get(f"{base_url}/auth/token", timeout=10).json()["access_token"]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    answers = {}
    for conn_id, port in (("callbell_ui_port", callbell_sandbox.port), ("callbell_ui_no_port", None)):
        created = api.post(
            f"{base_url}/api/v2/connections",
            json={
                "connection_id": conn_id,
                "conn_type": "callbell",
                "host": callbell_sandbox.url,
                "port": port,
                "password": callbell_sandbox.token,
            },
            timeout=30,
        )
        assert created.status_code == 201, created.text
        stored = api.get(f"{base_url}/api/v2/connections/{conn_id}", timeout=30).json()
        assert stored["password"] != callbell_sandbox.token  # listed masked, as the UI gets it
        answers[conn_id] = api.post(
            f"{base_url}/api/v2/connections/test", json=_ui_test_body(stored), timeout=60
        )
    # The documented alternative through the REST API: a body with the token itself.
    answers["rest_api"] = api.post(
        f"{base_url}/api/v2/connections/test",
        json={
            "connection_id": "callbell_ui_no_port",
            "conn_type": "callbell",
            "host": callbell_sandbox.url,
            "password": callbell_sandbox.token,
        },
        timeout=60,
    )

    # With the port filled in (the form shows it for this reason), the Test button works on 3.3.2.
    with_port = answers["callbell_ui_port"]
    assert with_port.status_code == 200, with_port.text
    assert with_port.json() == {"status": True, "message": "Connected to Callbell as sandbox@example.com"}
    rest_api = answers["rest_api"]
    assert rest_api.status_code == 200, rest_api.text
    assert rest_api.json()["status"] is True
    assert [r["path"] for r in callbell_sandbox.requests] == ["/v1/auth/me", "/v1/auth/me"]
    # Without a port, Airflow 3.3.2 refuses the UI's port 0 before the provider is asked
    # (apache/airflow#73298 fixes it in the API; later versions answer 200).
    without_port = answers["callbell_ui_no_port"]
    if AIRFLOW_VERSION == "3.3.2":
        assert without_port.status_code == 400
        assert "differs from the stored connection" in without_port.text
    else:
        assert without_port.status_code == 200, without_port.text
