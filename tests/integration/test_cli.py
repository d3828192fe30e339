"""The provider as Airflow's command line sees it after install."""

from __future__ import annotations

import json

import pytest

import airflow_provider_callbell

pytestmark = pytest.mark.integration


def test_providers_list_shows_the_provider(airflow):
    listed = json.loads(airflow.cli("providers", "list", "--output", "json").stdout)
    (provider,) = [p for p in listed if p["package_name"] == "airflow-provider-callbell"]
    assert provider["version"] == airflow_provider_callbell.__version__


def add_connection(airflow, conn_id: str, host: str, token: str) -> None:
    airflow.cli(
        "connections",
        "add",
        conn_id,
        "--conn-type",
        "callbell",
        "--conn-host",
        host,
        "--conn-password",
        token,
    )


def test_connection_added_by_cli_is_tested_against_the_sandbox(airflow, sandbox):
    enabled = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    add_connection(airflow, "callbell_cli", sandbox.url, sandbox.token)
    ok = airflow.cli("connections", "test", "callbell_cli", env=enabled)
    assert "Connection success!" in ok.stdout
    assert [(r["method"], r["path"], r["status"]) for r in sandbox.requests] == [("GET", "/v1/auth/me", 200)]

    wrong = "wrong-token-5d1c"
    add_connection(airflow, "callbell_bad", sandbox.url, wrong)
    refused = airflow.cli("connections", "test", "callbell_bad", env=enabled, check=False)
    output = refused.stdout + refused.stderr
    assert "Connection failed!" in output
    assert "HTTP 401" in output
    assert "check the password of the Callbell connection" in output
    assert wrong not in output
