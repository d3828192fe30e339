"""The sandbox's web inbox in a real Chromium: live updates, statuses, replies, escaping, 10,000 messages."""

from __future__ import annotations

import http.server
import logging
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_callbell.callback_events import CallbackEvent
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.sandbox.server import DEFAULT_TEMPLATES
from tests.browser.helpers import screenshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

    from airflow_provider_callbell.sandbox import CallbellSandbox

pytestmark = [
    pytest.mark.browser,
    # Statuses move slowly enough to watch: one step per 1.5 s.
    pytest.mark.callbell_sandbox(status_interval=1.5, failing_recipients={"+31600000000": "not on WhatsApp"}),
]

PHONE = "+31612345678"
WAIT = 15  # seconds; the page polls every second


def wait_for(driver: WebDriver, css: str, timeout: float = WAIT, text: str | None = None) -> WebElement:
    """The first element matching ``css`` (whose text is ``text``, when given) once it is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def found(driver: WebDriver) -> WebElement | None:
        for element in driver.find_elements(By.CSS_SELECTOR, css):
            if text is None or element.text == text:
                return element
        return None

    element: WebElement = WebDriverWait(driver, timeout, poll_frequency=0.02).until(found)
    return element


def root(callbell_sandbox: CallbellSandbox) -> str:
    return f"http://{callbell_sandbox.host}:{callbell_sandbox.port}/"


def test_a_send_through_the_hook_appears_without_reload(
    browser: WebDriver, callbell_sandbox: CallbellSandbox
) -> None:
    browser.get(root(callbell_sandbox))
    wait_for(browser, "body[data-polled]")
    browser.execute_script("window.notReloaded = true")

    sent = CallbellHook().send_message(
        PHONE, content={"text": "Disk *almost* _full_ on ~db1~ ```/var```"}, metadata={"dag": "etl"}
    )

    bubble = wait_for(browser, f'.bubble[data-uuid="{sent["uuid"]}"]')
    assert bubble.find_element("css selector", "strong").text == "almost"
    assert bubble.find_element("css selector", "em").text == "full"
    assert bubble.find_element("css selector", "s").text == "db1"
    assert bubble.find_element("css selector", "code").text == "/var"
    assert "dag=etl" in bubble.text
    conversation = wait_for(browser, f'.conversation[data-contact="{PHONE}"]')
    assert conversation.find_element("css selector", ".count").text == "1"
    assert browser.execute_script("return window.notReloaded") is True


def status_seen(browser: WebDriver, message_uuid: str) -> str | None:
    status: str | None = browser.execute_script(
        "const s = document.querySelector(`.bubble[data-uuid='${arguments[0]}'] .status`);"
        "return s && s.dataset.status;",
        message_uuid,
    )
    return status


def test_status_ticks_follow_the_delivery_steps(
    browser: WebDriver, callbell_sandbox: CallbellSandbox
) -> None:
    hook = CallbellHook()
    sent = hook.send_message(PHONE, content={"text": "watch my ticks"})
    failed = hook.send_message("+31600000000", content={"text": "nobody home"})
    browser.get(root(callbell_sandbox))
    wait_for(browser, f'.conversation[data-contact="{PHONE}"]').click()
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

    browser.find_element("css selector", '.conversation[data-contact="+31600000000"]').click()
    bubble = wait_for(browser, f'.bubble[data-uuid="{failed["uuid"]}"] .status[data-status="failed"]')
    assert bubble.text == "\u2717"
    assert (
        "not on WhatsApp"
        in browser.find_element("css selector", f'.bubble[data-uuid="{failed["uuid"]}"]').text
    )


def test_a_reply_typed_in_the_box_reaches_the_contacts_messages(
    browser: WebDriver, callbell_sandbox: CallbellSandbox
) -> None:
    hook = CallbellHook()
    question = hook.send_message(PHONE, content={"text": "Publish the numbers? Reply YES or NO"})
    browser.get(root(callbell_sandbox))
    wait_for(browser, f'.bubble[data-uuid="{question["uuid"]}"]')
    box = browser.find_element("id", "reply-text")
    box.send_keys("yes *please*")
    browser.find_element("id", "reply-send").click()

    answer = wait_for(browser, ".bubble.in")
    assert answer.find_element("css selector", "strong").text == "please"
    assert box.get_attribute("value") == ""
    contact = hook.get_contact_by_phone(PHONE)
    assert contact is not None
    listed = requests.get(
        f"{callbell_sandbox.url}/contacts/{contact['uuid']}/messages",
        headers={"Authorization": f"Bearer {callbell_sandbox.token}"},
        timeout=10,
    ).json()["messages"]
    assert [(m["status"], m["text"]) for m in listed] == [
        ("received", "yes *please*"),
        ("sent", "Publish the numbers? Reply YES or NO"),
    ]
    wait_for(browser, f'.conversation[data-contact="{PHONE}"] .count', text="2")


def test_knobs_form_and_reset(browser: WebDriver, callbell_sandbox: CallbellSandbox) -> None:
    knobs_url = f"{root(callbell_sandbox)}_sandbox/knobs"
    sent = CallbellHook().send_message(PHONE, content={"text": "soon gone"})
    browser.get(root(callbell_sandbox))
    wait_for(browser, f'.bubble[data-uuid="{sent["uuid"]}"]')
    form = browser.find_element("id", "knobs")
    assert form.find_element("name", "rate_limit").get_attribute("value") == "300"  # the current knobs

    for name, value in {"latency": "0.5", "error_rate": "0.25", "rate_limit": "5"}.items():
        field = form.find_element("name", name)
        field.clear()
        field.send_keys(value)
    browser.find_element("id", "knobs-apply").click()
    wait_for(browser, "#knobs-result", text="applied")
    knobs = requests.get(knobs_url, timeout=10).json()
    assert (knobs["latency"], knobs["error_rate"], knobs["rate_limit"]) == (0.5, 0.25, 5)

    field = form.find_element("name", "error_rate")
    field.clear()
    field.send_keys("2")
    browser.find_element("id", "knobs-apply").click()
    assert "error_rate" in wait_for(browser, "#knobs-result:not(:empty)").text  # named by the sandbox
    assert requests.get(knobs_url, timeout=10).json()["error_rate"] == 0.25  # the bad value was refused

    browser.find_element("id", "reset").click()
    wait_for(browser, "#stats", text="0 messages \u00b7 0 conversations")
    assert browser.find_elements("css selector", ".bubble, .conversation") == []
    assert callbell_sandbox.messages == []


INJECTIONS = ["<script>alert(1)</script>", '<img src=x onerror="window.pwned=1">']


def test_every_value_is_shown_as_text(browser: WebDriver, callbell_sandbox: CallbellSandbox) -> None:
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
    browser.get(root(callbell_sandbox))
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


def png(width: int, height: int) -> bytes:
    """A small gradient picture, written by hand so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes((37, 120 + 100 * y // height, 80 + 150 * x // width)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png(180, 110)


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


def test_media_templates_and_a_whole_conversation(
    browser: WebDriver, callbell_sandbox: CallbellSandbox, media_server: str
) -> None:
    callbell_sandbox.configure(status_interval=0.3)
    hook = CallbellHook()
    hook.send_message("+31600000000", content={"text": "Are you there?"})  # a second conversation
    alert = hook.send_message(
        PHONE, content={"text": "Nightly load *failed* at _transform_"}, metadata={"dag_id": "sales_etl"}
    )
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
    callbell_sandbox.receive(PHONE, "ACK, looking into it")
    browser.get(root(callbell_sandbox))
    marked = wait_for(browser, f'.bubble[data-uuid="{template["uuid"]}"] .template')
    assert marked.get_attribute("data-template-uuid") == DEFAULT_TEMPLATES[0]["uuid"]
    assert DEFAULT_TEMPLATES[0]["uuid"] in marked.text
    assert 'values: ["Ada"]' in marked.text
    assert "Hello Ada" in marked.text

    shown = wait_for(browser, f'.bubble[data-uuid="{image["uuid"]}"] img')
    assert browser.execute_script("return arguments[0].naturalWidth", shown) == 180
    fallback = wait_for(browser, f'.bubble[data-uuid="{missing["uuid"]}"] a.file')
    assert fallback.text.endswith("missing.png")
    assert fallback.get_attribute("href") == f"{media_server}/gone/missing.png"
    link = wait_for(browser, f'.bubble[data-uuid="{document["uuid"]}"] a.file')
    assert link.text.endswith("q3 report.pdf")
    assert "ACK, looking into it" in wait_for(browser, ".bubble.in").text
    wait_for(browser, f'.bubble[data-uuid="{alert["uuid"]}"] .status[data-status="read"]')
    wait_for(browser, f'.bubble[data-uuid="{template["uuid"]}"] .status[data-status="read"]')
    screenshot(browser, "inbox")


def test_an_alert_with_snake_case_names_is_shown_intact(
    browser: WebDriver, callbell_sandbox: CallbellSandbox
) -> None:
    run_id = "manual__2026-12-03T10:00:00+00:00"
    log_url = f"http://localhost:8080/dags/sales_etl_daily/runs/{run_id}/tasks/load_to_dwh?try_number=1"
    alert = CallbackEvent(  # the notifier's default failure alert
        level="task",
        outcome="failed",
        dag_id="sales_etl_daily",
        run_id=run_id,
        task_id="load_to_dwh",
        error="KeyError: 'customer_id' in transform_rows",
        log_url=log_url,
    ).summary()
    sent = CallbellHook().send_message(PHONE, content={"text": alert})
    browser.get(root(callbell_sandbox))
    text = wait_for(browser, f'.bubble[data-uuid="{sent["uuid"]}"] .text')
    assert text.text == alert  # every underscore where it was sent
    assert text.find_elements("css selector", "strong, em, s, code") == []


def test_a_page_of_another_site_changes_nothing(
    browser: WebDriver, callbell_sandbox: CallbellSandbox, media_server: str
) -> None:
    sent = CallbellHook().send_message(PHONE, content={"text": "keep me"})
    # A page of another site (localhost is not 127.0.0.1's site) tries what needs no CORS preflight:
    # no-cors posts with a text/plain body, then a JSON post whose preflight the sandbox never grants.
    browser.get(media_server.replace("127.0.0.1", "localhost") + "/elsewhere")
    outcomes = browser.execute_async_script(
        """
        const [base, phone, done] = arguments;
        const post = (path, body, options) => fetch(base + path, { method: "POST", body: JSON.stringify(body), ...options })
          .then((answer) => answer.type === "opaque" ? "sent" : String(answer.status), (error) => "blocked");
        Promise.all([
          post("_sandbox/inbound", { from: phone, text: "YES" }, { mode: "no-cors", headers: { "Content-Type": "text/plain" } }),
          post("_sandbox/knobs", { error_rate: 1 }, { mode: "no-cors", headers: { "Content-Type": "text/plain" } }),
          post("_sandbox/reset", {}, { mode: "no-cors" }),
          post("_sandbox/inbound", { from: phone, text: "YES" }, { headers: { "Content-Type": "application/json" } }),
        ]).then(done);
        """,
        root(callbell_sandbox),
        PHONE,
    )
    assert outcomes == ["sent", "sent", "sent", "blocked"]  # the browser sent them; the sandbox refused
    assert [m["uuid"] for m in callbell_sandbox.messages] == [sent["uuid"]]
    assert [m["text"] for m in callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])] == [
        "keep me"
    ]
    assert requests.get(f"{root(callbell_sandbox)}_sandbox/knobs", timeout=10).json()["error_rate"] == 0.0


TEN_THOUSAND = 10_000
# Seconds from navigation to the newest bubble, and from scrolling to the top to the previous page on
# screen, with 10,000 messages; measured 0.4-0.8 s and 0.06-0.11 s on a busy 2-core machine.
NEWEST_BUDGET = 5.0
OLDER_BUDGET = 3.0


def fill(callbell_sandbox: CallbellSandbox, count: int) -> None:
    """``count`` messages over HTTP, 9 in 10 to PHONE and the rest spread over 250 other numbers."""

    def send(numbers: range) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {callbell_sandbox.token}"
            for i in numbers:
                to = PHONE if i % 10 else f"+3162{(i // 10) % 250:07d}"
                body = {"to": to, "from": "whatsapp", "type": "text", "content": {"text": f"message {i}"}}
                session.post(
                    f"{callbell_sandbox.url}/messages/send", json=body, timeout=10
                ).raise_for_status()

    callbell_sandbox.configure(rate_limit=None)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, [range(k, count, 4) for k in range(4)]))


def bubbles(browser: WebDriver) -> int:
    count: int = browser.execute_script("return document.querySelectorAll('#thread .bubble').length")
    return count


def test_ten_thousand_messages_load_fast(
    browser: WebDriver, callbell_sandbox: CallbellSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    caplog.set_level(logging.WARNING, logger="airflow_provider_callbell.sandbox")  # a line per message
    started = time.perf_counter()
    fill(callbell_sandbox, TEN_THOUSAND - 1)
    print(f"\nfilled in {time.perf_counter() - started:.1f} s")
    newest = CallbellHook().send_message(PHONE, content={"text": "the newest"})
    assert len(callbell_sandbox.messages) == TEN_THOUSAND

    started = time.perf_counter()
    browser.get(root(callbell_sandbox))
    wait_for(browser, f'.bubble[data-uuid="{newest["uuid"]}"]', timeout=30)
    to_newest = time.perf_counter() - started
    assert bubbles(browser) == 50  # one page, not 9,000 bubbles

    started = time.perf_counter()
    browser.execute_script("document.getElementById('thread').scrollTop = 0")
    WebDriverWait(browser, 30, poll_frequency=0.02).until(lambda driver: bubbles(driver) == 100)
    to_older = time.perf_counter() - started

    conversation = browser.find_element("css selector", f'.conversation[data-contact="{PHONE}"] .count')
    assert conversation.text == "9000"
    assert "and 51 more" in browser.find_element("css selector", "nav").text  # 251 conversations, 200 listed
    assert f"{TEN_THOUSAND} messages" in browser.find_element("id", "stats").text
    print(f"\n10,000 messages: newest page in {to_newest:.2f} s, older page in {to_older:.2f} s")
    assert to_newest < NEWEST_BUDGET
    assert to_older < OLDER_BUDGET
