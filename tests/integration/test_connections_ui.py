"""The Connections UI as a running Airflow serves it: the API server on 3.x, the web server on 2.x.

Each test starts the real server on a free loopback port in the session's throwaway AIRFLOW_HOME,
in its own process group, and kills the whole group afterwards, even when the test fails.
"""

from __future__ import annotations

import ast
import json
import re
from html import unescape
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_callbell.get_provider_info import CONN_FIELDS
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.conftest import api_server, webserver

if TYPE_CHECKING:
    from tests.integration.conftest import Airflow

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the API server and hook_meta are Airflow 3")
def test_api_server_hook_meta_describes_the_callbell_form(airflow: Airflow) -> None:
    with api_server(airflow) as base_url:
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
        "port": {"hidden": True, "title": None, "placeholder": None},
        "login": {"hidden": True, "title": None, "placeholder": None},
        "password": {
            "hidden": False,
            "title": "API token",
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
        "hidden_fields": ["login", "schema", "port", "extra"],
        "relabeling": {"password": "API token", "host": "Base URL"},
        "placeholders": {
            "host": "https://api.callbell.eu/v1",
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
