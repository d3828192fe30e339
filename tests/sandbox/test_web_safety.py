"""The sandbox as a safe local web service (issue 19): what a web page, a rebound name or a huge body
cannot do to it, and what a terminal shows of a hostile message.

Each attack is made as a browser or a careless client would make it, over a real socket; ``requests``
and ``http.client`` stand in for the browser by sending the headers it sends (``Origin``,
``Sec-Fetch-Site``, a ``text/plain`` body, the rebound ``Host``). The page's own requests are sent with
the headers Chromium gives them, and tests/browser/test_inbox.py repeats both sides in a real browser.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.sandbox.guard import MAX_BODY_BYTES
from tests.sandbox.helpers import TEXT, TOKEN, running_cli

if TYPE_CHECKING:
    from collections.abc import Callable

PHONE = "+31612345678"
EVIL = "http://evil.example"
JSON_TYPE = {"Content-Type": "application/json"}


def root(callbell_sandbox: CallbellSandbox) -> str:
    return f"http://127.0.0.1:{callbell_sandbox.port}"


def own_origin(callbell_sandbox: CallbellSandbox) -> str:
    return root(callbell_sandbox)


# What each state-changing route would change, and how to see that it did not.
def inbound_unchanged(callbell_sandbox: CallbellSandbox) -> bool:
    return all(contact["phoneNumber"] != PHONE for contact in callbell_sandbox.contacts)


def knobs_unchanged(callbell_sandbox: CallbellSandbox) -> bool:
    return requests.get(root(callbell_sandbox) + "/_sandbox/knobs", timeout=5).json()["error_rate"] == 0.0


def reset_not_done(callbell_sandbox: CallbellSandbox) -> bool:
    return len(callbell_sandbox.messages) == 1


ROUTES: list[Any] = [
    pytest.param(
        "/_sandbox/inbound", {"from": PHONE, "text": "YES"}, inbound_unchanged, 201, id="inbound-yes"
    ),
    pytest.param("/_sandbox/knobs", {"error_rate": 1}, knobs_unchanged, 200, id="knobs"),
    pytest.param("/_sandbox/reset", {}, reset_not_done, 200, id="reset"),
]


@pytest.fixture
def one_message(callbell_sandbox: CallbellSandbox) -> None:
    """One message already in the sandbox, so that a reset would show."""
    answer = requests.post(
        f"{callbell_sandbox.url}/messages/send",
        json={**TEXT, "to": "+31699999999"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 200


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 5) -> tuple[int, str]:
    """Send ``head`` (and ``body``) on a fresh socket; the status and the answer's head, as read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.decode("latin-1").partition("\r\n")
    return int(status_line.split()[1]), rest.partition("\r\n\r\n")[0]


@pytest.mark.usefixtures("one_message")
class TestCrossSite:
    """A page of another site posts to the sandbox: it must change nothing."""

    @pytest.mark.parametrize(("path", "body", "unchanged", "status"), ROUTES)
    @pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1", "http://localhost"])
    def test_a_foreign_origin_changes_nothing(
        self,
        callbell_sandbox: CallbellSandbox,
        path: str,
        body: Any,
        unchanged: Callable[[CallbellSandbox], bool],
        status: int,
        origin: str,
    ) -> None:
        # JSON and no Sec-Fetch-Site: only the Origin tells that another page sent it.
        answer = requests.post(
            root(callbell_sandbox) + path, json=body, headers={"Origin": origin}, timeout=5
        )
        assert answer.status_code == 403
        assert answer.json()["error"]["field"] == "Origin"
        assert unchanged(callbell_sandbox)

    @pytest.mark.parametrize(("path", "body", "unchanged", "status"), ROUTES)
    @pytest.mark.parametrize("site", ["cross-site", "same-site"])
    def test_a_request_from_another_site_changes_nothing(
        self,
        callbell_sandbox: CallbellSandbox,
        path: str,
        body: Any,
        unchanged: Callable[[CallbellSandbox], bool],
        status: int,
        site: str,
    ) -> None:
        # Only Sec-Fetch-Site tells (a browser that left Origin out).
        answer = requests.post(
            root(callbell_sandbox) + path, json=body, headers={"Sec-Fetch-Site": site}, timeout=5
        )
        assert answer.status_code == 403
        assert answer.json()["error"]["field"] == "Sec-Fetch-Site"
        assert unchanged(callbell_sandbox)

    @pytest.mark.parametrize(("path", "body", "unchanged", "status"), ROUTES)
    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
    )
    def test_only_json_changes_anything(
        self,
        callbell_sandbox: CallbellSandbox,
        path: str,
        body: Any,
        unchanged: Callable[[CallbellSandbox], bool],
        status: int,
        content_type: str | None,
    ) -> None:
        # What a cross-site form or a no-cors fetch can send without a preflight; no Origin at all.
        headers = {"Content-Type": content_type} if content_type else {}
        answer = requests.post(
            root(callbell_sandbox) + path, data=json.dumps(body), headers=headers, timeout=5
        )
        assert answer.status_code == 415
        assert answer.json()["error"]["field"] == "Content-Type"
        assert unchanged(callbell_sandbox)

    @pytest.mark.parametrize(("path", "body", "unchanged", "status"), ROUTES)
    def test_the_inboxs_own_page_and_programs_change_things(
        self,
        callbell_sandbox: CallbellSandbox,
        path: str,
        body: Any,
        unchanged: Callable[[CallbellSandbox], bool],
        status: int,
    ) -> None:
        # As Chromium sends the page's fetches (then as requests sends them: neither header).
        headers = {
            "Origin": own_origin(callbell_sandbox),
            "Sec-Fetch-Site": "same-origin",
            "Content-Type": "application/json; charset=utf-8",
        }
        answer = requests.post(
            root(callbell_sandbox) + path, data=json.dumps(body), headers=headers, timeout=5
        )
        assert answer.status_code == status, answer.text
        assert not unchanged(callbell_sandbox)
        assert requests.post(root(callbell_sandbox) + path, json=body, timeout=5).status_code == status

    def test_the_api_refuses_other_sites_too(self, callbell_sandbox: CallbellSandbox) -> None:
        # The token is public knowledge for a sandbox; a page of another site still cannot send.
        for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
            answer = requests.post(
                f"{callbell_sandbox.url}/messages/send",
                json=TEXT,
                headers={"Authorization": f"Bearer {TOKEN}", **headers},
                timeout=5,
            )
            assert answer.status_code == 403
        assert len(callbell_sandbox.messages) == 1

    def test_reading_and_a_link_to_the_inbox_stay_open(self, callbell_sandbox: CallbellSandbox) -> None:
        # A GET changes nothing (a cross-site page cannot read the answer): following a link works.
        page = requests.get(root(callbell_sandbox) + "/", headers={"Sec-Fetch-Site": "cross-site"}, timeout=5)
        assert page.status_code == 200


class TestHost:
    """DNS rebinding: a page whose name now points at 127.0.0.1 asks with its own name as Host."""

    @pytest.mark.parametrize(
        "host",
        [
            pytest.param("evil.example:{port}", id="rebound-name"),
            pytest.param("evil.example", id="rebound-name-default-port"),
            pytest.param("127.0.0.1:1{port}", id="other-port"),
            pytest.param("localhost", id="loopback-default-port"),
            pytest.param("127.0.0.1.evil.example:{port}", id="suffix"),
            pytest.param("", id="empty"),
        ],
    )
    def test_a_foreign_host_reads_nothing(self, callbell_sandbox: CallbellSandbox, host: str) -> None:
        callbell_sandbox.receive(PHONE, "my secret answer")
        for path in ("/_sandbox/messages", "/_sandbox/inbox/conversations", "/"):
            answer = requests.get(
                root(callbell_sandbox) + path,
                headers={"Host": host.format(port=callbell_sandbox.port)},
                timeout=5,
            )
            assert answer.status_code == 400
            assert answer.json()["error"]["field"] == "Host"
            assert "secret" not in answer.text
        authorized = requests.get(
            f"{callbell_sandbox.url}/auth/me",
            headers={"Host": host.format(port=callbell_sandbox.port), "Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        assert authorized.status_code == 400

    def test_two_host_headers_are_refused(self, callbell_sandbox: CallbellSandbox) -> None:
        status, _ = raw_request(
            callbell_sandbox.port,
            f"GET /_sandbox/messages HTTP/1.1\nHost: 127.0.0.1:{callbell_sandbox.port}\nHost: evil.example\n",
        )
        assert status == 400

    def test_no_host_header_is_refused(self, callbell_sandbox: CallbellSandbox) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", callbell_sandbox.port, timeout=5)
        try:
            connection.putrequest("GET", "/_sandbox/messages", skip_host=True)
            connection.endheaders()
            assert connection.getresponse().status == 400
        finally:
            connection.close()

    @pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LocalHost", "[::1]"])
    def test_the_loopback_names_at_its_port_are_answered(
        self, callbell_sandbox: CallbellSandbox, name: str
    ) -> None:
        answer = requests.get(
            root(callbell_sandbox) + "/_sandbox/messages",
            headers={"Host": f"{name}:{callbell_sandbox.port}"},
            timeout=5,
        )
        assert answer.status_code == 200

    def test_allowed_hosts_add_names(self) -> None:
        with CallbellSandbox(allowed_hosts=["callbell-sandbox", "proxy.test:9000"]) as sandbox:

            def status(host: str) -> int:
                return requests.get(
                    f"{root(sandbox)}/_sandbox/messages", headers={"Host": host}, timeout=5
                ).status_code

            assert status(f"callbell-sandbox:{sandbox.port}") == 200
            assert status("proxy.test:9000") == 200
            assert status(f"localhost:{sandbox.port}") == 200
            assert status("callbell-sandbox:9000") == 400
            assert status(f"proxy.test:{sandbox.port}") == 400
            assert status(f"evil.example:{sandbox.port}") == 400

    @pytest.mark.callbell_sandbox(allowed_hosts=["callbell-sandbox"])
    def test_the_marker_passes_allowed_hosts(self, callbell_sandbox: CallbellSandbox) -> None:
        answer = requests.get(
            root(callbell_sandbox) + "/_sandbox/messages",
            headers={"Host": f"callbell-sandbox:{callbell_sandbox.port}"},
            timeout=5,
        )
        assert answer.status_code == 200


class TestBodies:
    """Bodies are capped before they are read, on every route, before the token is looked at."""

    @pytest.mark.parametrize(
        ("path", "authorization"),
        [
            pytest.param("/_sandbox/inbound", "", id="inbound"),
            pytest.param("/v1/messages/send", "", id="api-without-token"),
            pytest.param("/v1/messages/send", f"Authorization: Bearer {TOKEN}\n", id="api-with-token"),
        ],
    )
    def test_a_huge_body_is_refused_before_a_byte_is_read(
        self, callbell_sandbox: CallbellSandbox, path: str, authorization: str
    ) -> None:
        # Only the head is sent: a sandbox that waited for the 100 MiB would never answer.
        started = time.monotonic()
        status, head = raw_request(
            callbell_sandbox.port,
            f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{callbell_sandbox.port}\n{authorization}"
            f"Content-Type: application/json\nContent-Length: {100 * 2**20}\n",
        )
        assert status == 413
        assert "Connection: close" in head
        assert time.monotonic() - started < 5
        assert callbell_sandbox.requests == []  # refused before the API saw it: no 401, no record

    def test_a_client_that_asks_first_is_told_no_before_it_sends(
        self, callbell_sandbox: CallbellSandbox
    ) -> None:
        # curl asks with "Expect: 100-continue" before a large body: the answer is the refusal itself.
        status, _ = raw_request(
            callbell_sandbox.port,
            f"POST /_sandbox/inbound HTTP/1.1\nHost: 127.0.0.1:{callbell_sandbox.port}\n"
            f"Content-Type: application/json\nExpect: 100-continue\nContent-Length: {100 * 2**20}\n",
        )
        assert status == 413

    def test_a_body_of_unknown_length_is_refused(self, callbell_sandbox: CallbellSandbox) -> None:
        status, head = raw_request(
            callbell_sandbox.port,
            f"POST /v1/messages/send HTTP/1.1\nHost: 127.0.0.1:{callbell_sandbox.port}\n"
            f"Authorization: Bearer {TOKEN}\nContent-Type: application/json\nTransfer-Encoding: chunked\n",
            b"7fffffff\r\n{",
        )
        assert status == 411
        assert "Connection: close" in head
        assert callbell_sandbox.messages == []

    @pytest.mark.parametrize("length", ["-1", "+5", "5, 5", "five", "0x10"])
    def test_a_malformed_length_is_refused(self, callbell_sandbox: CallbellSandbox, length: str) -> None:
        status, _ = raw_request(
            callbell_sandbox.port,
            f"POST /_sandbox/inbound HTTP/1.1\nHost: 127.0.0.1:{callbell_sandbox.port}\n"
            f"Content-Type: application/json\nContent-Length: {length}\n",
        )
        assert status == 400

    def test_a_body_at_the_cap_is_read(self, callbell_sandbox: CallbellSandbox) -> None:
        body = json.dumps({"from": PHONE, "text": "yes"}).encode()
        body = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"  # JSON padded to exactly the cap
        answer = requests.post(
            root(callbell_sandbox) + "/_sandbox/inbound", data=body, headers=JSON_TYPE, timeout=10
        )
        assert answer.status_code == 201
        over = requests.post(
            root(callbell_sandbox) + "/_sandbox/inbound", data=body + b" ", headers=JSON_TYPE, timeout=10
        )
        assert over.status_code == 413

    def test_the_sandbox_serves_on_after_refusing(self, callbell_sandbox: CallbellSandbox) -> None:
        for _ in range(20):  # each refusal closes its connection; no thread stays reading
            raw_request(
                callbell_sandbox.port,
                f"POST /_sandbox/inbound HTTP/1.1\nHost: 127.0.0.1:{callbell_sandbox.port}\n"
                f"Content-Length: {MAX_BODY_BYTES + 1}\n",
            )
        assert requests.get(root(callbell_sandbox) + "/_sandbox/messages", timeout=5).status_code == 200


class TestCli:
    def test_help_shows_every_options_default(self) -> None:
        shown = subprocess.run(
            [sys.executable, "-m", "airflow_provider_callbell.sandbox", "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "250"},  # one line per option
            check=True,
        ).stdout
        options: dict[str, str] = {}  # each option and its help, joined when on lines of its own
        last = ""
        for line in shown.split("options:", 1)[1].split("\n\n", 1)[0].splitlines():
            if line.startswith("  -"):
                last = line.split()[0]
                options[last] = line
            elif line.strip():
                options[last] += " " + line.strip()
        del options["-h,"]
        assert set(options) == {
            "--host",
            "--port",
            "--allowed-host",
            "--token",
            "--status-interval",
            "--rate-limit",
            "--latency",
            "--error-rate",
            "--drop-rate",
            "--seed",
            "--auto-reply",
            "--auto-reply-delay",
        }
        missing = [option for option, line in options.items() if "(default: " not in line]
        assert missing == []
        for option, default in {
            "--host": "127.0.0.1",
            "--port": "8787",
            "--token": "sandbox-token",
            "--rate-limit": "300",
            "--status-interval": "1.0",
        }.items():
            assert options[option].endswith(f"(default: {default})"), options[option]

    def test_a_service_on_every_address_answers_its_service_name(self) -> None:
        with running_cli("--host", "0.0.0.0", "--allowed-host", "callbell-sandbox") as (connection, _):
            port = connection["host"].split(":")[2].split("/")[0]
            assert connection["host"] == f"http://0.0.0.0:{port}/v1"
            base = f"http://127.0.0.1:{port}/_sandbox/messages"
            assert (
                requests.get(base, headers={"Host": f"callbell-sandbox:{port}"}, timeout=5).status_code == 200
            )
            assert requests.get(base, headers={"Host": f"0.0.0.0:{port}"}, timeout=5).status_code == 200
            assert requests.get(base, headers={"Host": f"evil.example:{port}"}, timeout=5).status_code == 400

    def test_the_terminal_is_shown_control_characters_not_given_them(self) -> None:
        hostile = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\x00"
        with running_cli() as (connection, lines):
            headers = {"Authorization": f"Bearer {connection['password']}"}
            body = {**TEXT, "content": {"text": f"alert {hostile}"}}
            assert requests.post(
                f"{connection['host']}/messages/send", json=body, headers=headers, timeout=5
            ).ok
            telegram = {"to": f"chat{hostile}", "from": "telegram", "type": "text", "content": {"text": "hi"}}
            assert requests.post(
                f"{connection['host']}/messages/send", json=telegram, headers=headers, timeout=5
            ).ok
            inbox = connection["host"].removesuffix("/v1")
            answer = {"from": f"chat{hostile}", "text": f"reply {hostile}", "channel": "telegram"}
            assert requests.post(f"{inbox}/_sandbox/inbound", json=answer, timeout=5).status_code == 201
            logged = [lines.get(timeout=5) for _ in range(3)]
        escaped = r"\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\x00"
        assert logged[0].rstrip("\n").endswith(f"via whatsapp: alert {escaped}"), logged
        assert f"to chat{escaped} via telegram: hi" in logged[1]
        assert logged[2].rstrip("\n") == f"[sandbox] reply from chat{escaped} via telegram: reply {escaped}"
        for line in logged:
            assert not any(ord(char) < 32 or 0x7F <= ord(char) < 0xA0 for char in line.rstrip("\n")), repr(
                line
            )
            assert "\u202e" not in line
