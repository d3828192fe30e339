"""The sandbox's web inbox in a real Chromium: live updates, statuses, replies, escaping, 10,000 messages."""

from __future__ import annotations

import http.server
import threading
import time
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.sandbox.server import DEFAULT_TEMPLATES
from tests.browser.conftest import screenshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

pytestmark = pytest.mark.browser

PHONE = "+31612345678"
WAIT = 15  # seconds; the page polls every second


def wait_for(driver: WebDriver, css: str, timeout: float = WAIT) -> WebElement:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    element: WebElement = WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    return element


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallbellSandbox]:
    """A sandbox whose statuses move slowly enough to watch: one step per 1.5 s."""
    with CallbellSandbox(
        status_interval=1.5, failing_recipients={"+31600000000": "not on WhatsApp"}
    ) as running:
        monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", running.connection_json)
        yield running


def root(sandbox: CallbellSandbox) -> str:
    return f"http://{sandbox.host}:{sandbox.port}/"


def test_a_send_through_the_hook_appears_without_reload(browser: WebDriver, sandbox: CallbellSandbox) -> None:
    browser.get(root(sandbox))
    wait_for(browser, "body[data-polled]")
    browser.execute_script("window.notReloaded = true")

    sent = CallbellHook().send_message(
        PHONE, content={"text": "Disk *almost* _full_"}, metadata={"dag": "etl"}
    )

    bubble = wait_for(browser, f'.bubble[data-uuid="{sent["uuid"]}"]')
    assert bubble.find_element("css selector", "strong").text == "almost"
    assert bubble.find_element("css selector", "em").text == "full"
    assert "dag=etl" in bubble.text
    conversation = wait_for(browser, f'.conversation[data-id="{PHONE}"]')
    assert conversation.find_element("css selector", ".count").text == "1"
    assert browser.execute_script("return window.notReloaded") is True
    screenshot(browser, "inbox")


def status_seen(browser: WebDriver, message_uuid: str) -> str | None:
    status: str | None = browser.execute_script(
        "const s = document.querySelector(`.bubble[data-uuid='${arguments[0]}'] .status`);"
        "return s && s.dataset.status;",
        message_uuid,
    )
    return status


def test_status_ticks_follow_the_delivery_steps(browser: WebDriver, sandbox: CallbellSandbox) -> None:
    hook = CallbellHook()
    sent = hook.send_message(PHONE, content={"text": "watch my ticks"})
    failed = hook.send_message("+31600000000", content={"text": "nobody home"})
    browser.get(root(sandbox))
    wait_for(browser, f'.conversation[data-id="{PHONE}"]').click()
    seen: list[str] = []
    deadline = time.monotonic() + WAIT
    while "read" not in seen and time.monotonic() < deadline:
        status = status_seen(browser, sent["uuid"])
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.1)
    # Opened within the first step, then watched move without a reload: sent, delivered, read.
    assert seen[-3:] == ["sent", "delivered", "read"] or seen[-2:] == ["delivered", "read"], seen
    ticks = browser.find_element("css selector", f'.bubble[data-uuid="{sent["uuid"]}"] .status')
    assert ticks.text == "\u2713\u2713"
    assert ticks.value_of_css_property("color") == "rgba(83, 189, 235, 1)"  # read is blue

    browser.find_element("css selector", '.conversation[data-id="+31600000000"]').click()
    bubble = wait_for(browser, f'.bubble[data-uuid="{failed["uuid"]}"] .status[data-status="failed"]')
    assert bubble.text == "\u2717"
    assert (
        "not on WhatsApp"
        in browser.find_element("css selector", f'.bubble[data-uuid="{failed["uuid"]}"]').text
    )


INJECTIONS = ["<script>alert(1)</script>", '<img src=x onerror="window.pwned=1">']


def test_every_value_is_shown_as_text(browser: WebDriver, sandbox: CallbellSandbox) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    hook = CallbellHook()
    for text in INJECTIONS:
        hook.send_message(PHONE, content={"text": text}, metadata={"<b>key</b>": text})
    template = hook.send_message(
        PHONE,
        template_uuid=DEFAULT_TEMPLATES[0]["uuid"],
        optin_contact=True,
        content={"text": INJECTIONS[1]},
    )
    browser.get(root(sandbox))
    wait_for(browser, f'.bubble[data-uuid="{template["uuid"]}"]')

    thread = browser.find_element("css selector", "#thread")
    for text in INJECTIONS:
        assert text in thread.text
        assert f"<b>key</b>={text}" in thread.text
    assert f"Hello {INJECTIONS[1]}" in thread.text  # the template's text with its value, as text
    assert browser.find_elements("css selector", "#thread script, #thread img, #thread b") == []
    assert browser.execute_script("return window.pwned") is None
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (reading it is what raises)


PNG = bytes.fromhex(  # a 1x1 green PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478da63d0fa"
    "cf00000302018036d9a30000000049454e44ae426082"
)


@pytest.fixture
def media_server() -> Iterator[str]:
    """A loopback server with one image, /cat.png; every other path is a 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/cat.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_media_and_templates(browser: WebDriver, sandbox: CallbellSandbox, media_server: str) -> None:
    hook = CallbellHook()
    image = hook.send_message(PHONE, type="image", content={"url": f"{media_server}/cat.png"})
    missing = hook.send_message(PHONE, type="image", content={"url": f"{media_server}/gone/missing.png"})
    document = hook.send_message(PHONE, type="document", content={"url": f"{media_server}/q3%20report.pdf"})
    template = hook.send_message(
        PHONE,
        template_uuid=DEFAULT_TEMPLATES[0]["uuid"],
        optin_contact=True,
        content={"text": "Ada"},
        metadata={"campaign": "spring"},
    )
    browser.get(root(sandbox))
    marked = wait_for(browser, f'.bubble[data-uuid="{template["uuid"]}"] .template')
    assert marked.get_attribute("data-template-uuid") == DEFAULT_TEMPLATES[0]["uuid"]
    assert DEFAULT_TEMPLATES[0]["uuid"] in marked.text
    assert 'values: ["Ada"]' in marked.text
    assert "Hello Ada" in marked.text

    shown = wait_for(browser, f'.bubble[data-uuid="{image["uuid"]}"] img')
    assert browser.execute_script("return arguments[0].naturalWidth", shown) == 1
    fallback = wait_for(browser, f'.bubble[data-uuid="{missing["uuid"]}"] a.file')
    assert fallback.text.endswith("missing.png")
    assert fallback.get_attribute("href") == f"{media_server}/gone/missing.png"
    link = wait_for(browser, f'.bubble[data-uuid="{document["uuid"]}"] a.file')
    assert link.text.endswith("q3 report.pdf")
    screenshot(browser, "inbox-media")
