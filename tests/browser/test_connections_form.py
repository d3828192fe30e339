"""The Callbell connection form as a person fills it in: Airflow 3's React UI and Airflow 2's web server.

Each test starts the real server (the helpers of tests/integration, own process group, killed at the
end), adds a Callbell connection through the form in a headless Chromium, checks what the form shows
(relabelled fields, hidden ones, every extra with its label), saves it and reads it back through the
REST API, then points a hook at what was saved and sends a message to the sandbox with it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.browser.helpers import screenshot
from tests.integration.helpers import api_server, webserver

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

    from airflow_provider_callbell.sandbox import CallbellSandbox
    from tests.integration.helpers import Airflow

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.callbell_sandbox(token="token-typed-in-the-form"),
]

CONN_ID = "callbell_from_the_form"
WAIT = 30  # seconds; the UI's first load compiles nothing but is slow on a busy 2-core machine
# What the form hides: Airflow's standard fields that Callbell does not use.
HIDDEN = ("Login", "Port", "Schema", "Host", "Password", "Extra")
# Extras typed into the form, and the values the hook must then use.
TYPED = {"timeout": "12", "max_retries": "2"}
SAVED = {"from": "telegram", "timeout": 12, "max_retries": 2, "delivery": "at_least_once"}


def wait(driver: WebDriver, condition: Any, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def visible_labels(scope: WebDriver | WebElement) -> list[str]:
    return [
        " ".join(label.text.replace("*", "").split())
        for label in scope.find_elements("css selector", "label")
        if label.is_displayed()
    ]


def check_the_hook_uses(
    conn: dict[str, Any], token: str, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook on the connection read back has the form's values and sends with them; the REST API
    never shows the token, so the one typed in the form is added back."""
    fields = {name: conn[name] for name in ("conn_type", "host", "login", "schema", "port", "extra")}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({**fields, "password": token}))
    hook = CallbellHook(callbell_conn_id=CONN_ID)
    params = hook._conn_params
    assert (params.base_url, params.from_) == (callbell_sandbox.url, "telegram")
    assert params.timeout == (12.0, 12.0)
    assert (params.retry.max_retries, params.retry.delivery) == (2, "at_least_once")
    hook.send_message("424242", content={"text": "saved through the form"})
    (message,) = callbell_sandbox.messages
    assert message["body"]["from"] == "telegram"


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the React UI of the API server is Airflow 3")
def test_callbell_connection_form_on_airflow_3(
    browser: WebDriver, airflow: Airflow, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.keys import Keys

    def choose(combobox: WebElement, option: str) -> None:
        combobox.send_keys(option)
        combobox.send_keys(Keys.ENTER)

    with api_server(airflow) as base_url:
        browser.get(f"{base_url}/connections")
        wait(browser, lambda d: d.find_elements("xpath", "//button[contains(., 'Add Connection')]"))[
            0
        ].click()
        dialog = wait(browser, lambda d: d.find_element("css selector", "[role=dialog]"))
        dialog.find_element("name", "connection_id").send_keys(CONN_ID)
        choose(dialog.find_element("css selector", "input[role=combobox]"), "Callbell")
        base = wait(browser, lambda d: d.find_element("css selector", "[role=dialog] input[placeholder]"))

        # Standard fields: only the ones Callbell uses, under its own names and hints.
        assert visible_labels(dialog) == [
            "Connection ID",
            "Connection Type",
            "Description",
            "Base URL",
            "API token (required)",
            "Port (optional)",
        ]
        assert base.get_attribute("placeholder") == DEFAULT_BASE_URL
        token = dialog.find_element("css selector", "input[type=password]")
        assert token.get_attribute("placeholder") == "API key from Callbell's dashboard"
        base.send_keys(callbell_sandbox.url)
        token.send_keys(callbell_sandbox.token)
        screenshot(browser, "connection-form-airflow-3")

        # Extra fields: every one, in order, with its label and its description.
        extras = dialog.find_element("xpath", ".//button[normalize-space(.)='Extra Fields']")
        extras.click()
        labels = [spec["label"] for spec in CONN_FIELDS.values()]
        wait(browser, lambda d: visible_labels(dialog)[-len(labels) :] == labels)
        for spec in CONN_FIELDS.values():
            assert spec["description"] in dialog.text
        assert not set(HIDDEN) & set(visible_labels(dialog))
        choose(dialog.find_element("css selector", "#element_from input[role=combobox]"), "telegram")
        for name, value in TYPED.items():
            dialog.find_element("name", f"element_{name}").send_keys(value)
        choose(dialog.find_element("css selector", "#element_delivery input[role=combobox]"), "at_least_once")
        browser.execute_script("arguments[0].scrollIntoView()", extras)
        screenshot(browser, "connection-form-airflow-3-extras")
        dialog.find_element("xpath", ".//button[normalize-space(.)='Save']").click()
        wait(browser, lambda d: not d.find_elements("css selector", "[role=dialog]"))

        # Read back through the REST API, as a client with a token does.
        api_token = requests.get(f"{base_url}/auth/token", timeout=10).json()["access_token"]
        saved = requests.get(
            f"{base_url}/api/v2/connections/{CONN_ID}",
            headers={"Authorization": f"Bearer {api_token}"},
            timeout=30,
        )
    assert saved.status_code == 200, saved.text
    conn = saved.json()
    assert (conn["conn_type"], conn["host"]) == ("callbell", callbell_sandbox.url)
    assert conn["password"] != callbell_sandbox.token  # the API never shows the token
    extra = json.loads(conn["extra"])
    assert set(extra) == set(CONN_FIELDS)  # the fields left empty are saved as null
    assert {name: value for name, value in extra.items() if value is not None} == SAVED
    check_the_hook_uses({**conn, "extra": extra}, callbell_sandbox.token, callbell_sandbox, monkeypatch)


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="the Flask-AppBuilder web server is Airflow 2.x")
def test_callbell_connection_form_on_airflow_2(
    browser: WebDriver, airflow: Airflow, callbell_sandbox: CallbellSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.keys import Keys

    with webserver(airflow) as base_url:
        browser.get(f"{base_url}/connection/add")
        form = wait(browser, lambda d: d.find_element("css selector", "form#model_form"))
        form.find_element("id", "conn_id").send_keys(CONN_ID)
        form.find_element("css selector", ".select2-selection").click()  # the type, as a person picks it
        search = wait(browser, lambda d: d.find_element("css selector", ".select2-search__field"))
        search.send_keys("Callbell")
        search.send_keys(Keys.ENTER)
        wait(browser, lambda d: "Base URL" in visible_labels(form))

        labels = [spec["label"] for spec in CONN_FIELDS.values()]
        assert visible_labels(form) == [
            "Connection Id",
            "Connection Type",
            "Description",
            "Base URL",
            "API token (required)",
            "Port (optional)",
            *labels,
        ]
        for spec in CONN_FIELDS.values():
            assert spec["description"] in form.text
        base, token = form.find_element("id", "host"), form.find_element("id", "password")
        assert base.get_attribute("placeholder") == DEFAULT_BASE_URL
        assert token.get_attribute("placeholder") == "API key from Callbell's dashboard"
        base.send_keys(callbell_sandbox.url)
        token.send_keys(callbell_sandbox.token)
        for name, value in {**TYPED, "from": "telegram", "delivery": "at_least_once"}.items():
            field = form.find_element("id", f"extra__callbell__{name}")
            field.clear()  # "from" and "delivery" start with their defaults
            field.send_keys(value)
        browser.execute_script("window.scrollTo(0, 0)")
        screenshot(browser, "connection-form-airflow-2")
        form.find_element("css selector", "button[type=submit]").click()
        wait(browser, lambda d: d.current_url.endswith("/home"))  # saved, then sent home

        # The REST API, fetched by the browser: the web server's one sync worker would sit waiting on
        # a connection the browser opened ahead of time and never used, while a second client waits.
        conn = browser.execute_async_script(
            "fetch(arguments[0]).then((answer) => answer.json()).then(arguments[1])",
            f"{base_url}/api/v1/connections/{CONN_ID}",
        )
    assert (conn["conn_type"], conn["host"]) == ("callbell", callbell_sandbox.url)
    assert "password" not in conn  # the API never shows the token
    extra = json.loads(conn["extra"])
    # Airflow 2 keeps a decimal field's text, and drops the fields left empty.
    assert extra == {**SAVED, "timeout": "12"}
    check_the_hook_uses({**conn, "extra": extra}, callbell_sandbox.token, callbell_sandbox, monkeypatch)
