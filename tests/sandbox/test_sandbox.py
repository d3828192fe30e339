"""Tests of the Callbell sandbox: every endpoint, every validation rule, the fault knobs, CLI and fixture.

``requests`` is the client on purpose: it is what the provider uses, so keep-alive, dropped
connections and paging are exercised the way the hook will meet them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.sandbox.server import DEFAULT_CHANNELS, DEFAULT_TEMPLATES
from tests.helpers import read_lines_in_background
from tests.sandbox.helpers import TEXT, TOKEN, send

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.callbell_sandbox(status_interval=0.05)

IMAGE = {
    "to": "+31612345678",
    "from": "whatsapp",
    "type": "image",
    "content": {"url": "https://x.test/a.png"},
}
TEMPLATE = {**TEXT, "content": {}, "template_uuid": DEFAULT_TEMPLATES[0]["uuid"], "optin_contact": True}


def statuses(callbell_sandbox: CallbellSandbox) -> list[Any]:
    return [record["status"] for record in callbell_sandbox.requests]


class TestLifecycle:
    def test_context_manager_serves_then_frees_port_and_threads(self) -> None:
        threads_before = threading.active_count()
        with CallbellSandbox() as callbell_sandbox, requests.Session() as session:
            assert callbell_sandbox.url == f"http://127.0.0.1:{callbell_sandbox.port}/v1"
            assert callbell_sandbox.port > 0
            # leave an idle keep-alive connection open: stop() must still return and clean up
            assert session.get(f"{callbell_sandbox.url}/auth/me", timeout=5).status_code == 401
            url = callbell_sandbox.url
        assert threading.active_count() == threads_before
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/auth/me", timeout=5)

    def test_connection_json_is_exact(self) -> None:
        with CallbellSandbox(token="t0k") as callbell_sandbox:
            assert callbell_sandbox.connection_json == (
                f'{{"conn_type": "callbell", "host": "http://127.0.0.1:{callbell_sandbox.port}/v1", "password": "t0k"}}'
            )

    def test_stop_is_idempotent_and_start_twice_fails(self) -> None:
        callbell_sandbox = CallbellSandbox().start()
        with pytest.raises(RuntimeError, match="already running"):
            callbell_sandbox.start()
        callbell_sandbox.stop()
        callbell_sandbox.stop()

    def test_stop_cuts_injected_latency_short(self) -> None:
        callbell_sandbox = CallbellSandbox(latency=30).start()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        caller = threading.Thread(
            target=requests.get, args=(f"{callbell_sandbox.url}/auth/me",), kwargs={"headers": headers}
        )
        caller.start()
        time.sleep(0.1)
        started = time.monotonic()
        callbell_sandbox.stop()
        caller.join()
        assert time.monotonic() - started < 2


class TestAuth:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="missing"),
            pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
            pytest.param({"Authorization": TOKEN}, id="no-scheme"),
            pytest.param({"Authorization": f"Basic {TOKEN}"}, id="wrong-scheme"),
        ],
    )
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            pytest.param("POST", "/messages/send", id="send"),
            pytest.param("GET", "/messages/status/abc", id="status"),
            pytest.param("DELETE", "/messages/abc", id="delete"),
            pytest.param("GET", "/auth/me", id="me"),
            pytest.param("GET", "/templates", id="templates"),
            pytest.param("GET", "/channels", id="channels"),
        ],
    )
    def test_bad_credentials_are_401_and_nothing_is_stored(
        self, callbell_sandbox: CallbellSandbox, headers: dict[str, str], method: str, path: str
    ) -> None:
        response = requests.request(
            method, callbell_sandbox.url + path, json=TEXT, headers=headers, timeout=5
        )
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized"}
        assert callbell_sandbox.messages == []

    def test_auth_me_answers_like_callbell(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        response = client.get(f"{callbell_sandbox.url}/auth/me", timeout=5)
        assert response.json() == {
            "status": "ok",
            "user_email": "sandbox@example.com",
            "user_name": "Sandbox User",
            "api_key": TOKEN,
        }

    def test_unknown_path_is_json_404(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        response = client.get(f"{callbell_sandbox.url}/contacts/nobody", timeout=5)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/json"
        assert "error" in response.json()


class TestSendMessage:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(TEXT, id="text"),
            pytest.param(IMAGE, id="image"),
            pytest.param(
                {**IMAGE, "content": {"url": "http://x.test/a.png", "text": "caption"}}, id="caption"
            ),
            pytest.param({**IMAGE, "type": "document"}, id="document"),
            pytest.param({**IMAGE, "type": "audio"}, id="audio"),
            pytest.param({**IMAGE, "type": "video"}, id="video"),
            pytest.param(TEMPLATE, id="template-without-text"),
            pytest.param({**TEMPLATE, "template_values": ["Ann", "42"]}, id="template-values"),
            pytest.param({**TEXT, "to": None, "bsuid": "US.123456"}, id="bsuid-only"),
            pytest.param({**TEXT, "to": "+31 (6) 1234-5678"}, id="phone-separators"),
            pytest.param({**TEXT, "to": "123456"}, id="phone-6-digits"),
            pytest.param({**TEXT, "to": "+123456789012345"}, id="phone-15-digits"),
            pytest.param({**TEXT, "from": "telegram", "to": "tg-user-42"}, id="telegram-id"),
            pytest.param(
                {**TEXT, "metadata": {f"{i:k>50}": "v" * 500 for i in range(10)}}, id="metadata-limits"
            ),
            pytest.param(
                {**TEXT, "bot_status": "bot_end", "channel_uuid": DEFAULT_CHANNELS[0]["uuid"]}, id="optional"
            ),
        ],
    )
    def test_valid_message_is_enqueued_and_stored(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, body: dict[str, Any]
    ) -> None:
        before = time.time()
        response = send(client, callbell_sandbox, body)
        assert response.status_code == 200, response.text
        message = response.json()["message"]
        assert message["status"] == "enqueued"
        assert len(message["uuid"]) == 32
        int(message["uuid"], 16)
        [stored] = callbell_sandbox.messages
        assert stored["uuid"] == message["uuid"]
        assert stored["body"] == body
        assert before <= stored["received_at"] <= time.time()

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            pytest.param("contact", {"contact"}, id="contact"),
            pytest.param("conversation", {"conversation"}, id="conversation"),
            pytest.param("contact, conversation", {"contact", "conversation"}, id="both"),
        ],
    )
    def test_fields_add_objects_to_the_answer(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, fields: str, expected: set[str]
    ) -> None:
        answer = send(client, callbell_sandbox, {**TEXT, "fields": fields}).json()["message"]
        assert set(answer) == {"uuid", "status", *expected}
        if "contact" in answer:
            assert answer["contact"]["phoneNumber"] == TEXT["to"]
            assert answer["contact"]["source"] == "whatsapp"

    def test_messages_keep_arrival_order(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        uuids = [
            send(client, callbell_sandbox, {**TEXT, "content": {"text": str(i)}}).json()["message"]["uuid"]
            for i in range(5)
        ]
        assert [message["uuid"] for message in callbell_sandbox.messages] == uuids

    def test_messages_is_a_copy(self, callbell_sandbox: CallbellSandbox, client: requests.Session) -> None:
        send(client, callbell_sandbox, TEXT)
        callbell_sandbox.messages[0]["body"]["to"] = "changed"
        assert callbell_sandbox.messages[0]["body"]["to"] == TEXT["to"]


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            pytest.param({k: v for k, v in TEXT.items() if k != "to"}, "to", id="no-recipient"),
            pytest.param({**TEXT, "to": 31612345678}, "to", id="to-not-string"),
            pytest.param({**TEXT, "to": None, "bsuid": 42}, "bsuid", id="bsuid-not-string"),
            pytest.param({k: v for k, v in TEXT.items() if k != "from"}, "from", id="no-from"),
            pytest.param({**TEXT, "from": "sms"}, "from", id="unknown-from"),
            pytest.param({**TEXT, "type": "sticker"}, "type", id="unknown-type"),
            pytest.param({k: v for k, v in TEXT.items() if k != "content"}, "content", id="no-content"),
            pytest.param({**TEXT, "content": "Hello!"}, "content", id="content-not-object"),
            pytest.param({**TEXT, "content": {}}, "content.text", id="no-text"),
            pytest.param({**TEXT, "content": {"text": "  "}}, "content.text", id="blank-text"),
            pytest.param({**TEXT, "content": {"text": 5}}, "content.text", id="text-not-string"),
            pytest.param({**IMAGE, "content": {}}, "content.url", id="no-url"),
            pytest.param({**IMAGE, "content": {"url": "ftp://x.test/a.png"}}, "content.url", id="ftp-url"),
            pytest.param({**IMAGE, "content": {"url": "not a url"}}, "content.url", id="not-url"),
            pytest.param({**TEMPLATE, "optin_contact": False}, "optin_contact", id="template-optin-false"),
            pytest.param(
                {k: v for k, v in TEMPLATE.items() if k != "optin_contact"},
                "optin_contact",
                id="template-no-optin",
            ),
            pytest.param({**TEMPLATE, "template_values": "Ann"}, "template_values", id="values-not-list"),
            pytest.param({**TEMPLATE, "template_values": ["Ann", 1]}, "template_values", id="values-not-str"),
            pytest.param({**TEXT, "metadata": ["a"]}, "metadata", id="metadata-not-object"),
            pytest.param(
                {**TEXT, "metadata": {str(i): "v" for i in range(11)}}, "metadata", id="metadata-11"
            ),
            pytest.param({**TEXT, "metadata": {"k" * 51: "v"}}, "metadata", id="metadata-long-key"),
            pytest.param({**TEXT, "metadata": {"k": "v" * 501}}, "metadata", id="metadata-long-value"),
            pytest.param({**TEXT, "metadata": {"k": 1}}, "metadata", id="metadata-value-not-str"),
            pytest.param({**TEXT, "bot_status": "paused"}, "bot_status", id="bot-status"),
            pytest.param({**TEXT, "fields": "contact,messages"}, "fields", id="fields-unknown"),
            pytest.param({**TEXT, "fields": ["contact"]}, "fields", id="fields-not-string"),
            pytest.param({**TEXT, "to": "12345"}, "to", id="phone-5-digits"),
            pytest.param({**TEXT, "to": "+1234567890123456"}, "to", id="phone-16-digits"),
            pytest.param({**TEXT, "to": "+31abc12345"}, "to", id="phone-letters"),
            pytest.param({**TEXT, "to": "31+612345678"}, "to", id="phone-inner-plus"),
        ],
    )
    def test_broken_rule_is_422_naming_the_field(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, body: dict[str, Any], field: str
    ) -> None:
        response = send(client, callbell_sandbox, body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field
        assert error["message"]
        assert callbell_sandbox.messages == []

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"[1, 2]", id="array"),
            pytest.param(b"{not json", id="invalid-json"),
            pytest.param(b"", id="empty"),
        ],
    )
    def test_body_not_a_json_object_is_400(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, data: bytes
    ) -> None:
        response = client.post(f"{callbell_sandbox.url}/messages/send", data=data, timeout=5)
        assert response.status_code == 400
        assert callbell_sandbox.messages == []


class TestStatus:
    def status(
        self, client: requests.Session, callbell_sandbox: CallbellSandbox, uuid: str
    ) -> requests.Response:
        return client.get(f"{callbell_sandbox.url}/messages/status/{uuid}", timeout=5)

    def wait_until(self, callbell_sandbox: CallbellSandbox, steps: float, interval: float = 0.05) -> None:
        """Sleep until ``steps`` status intervals after the (only) message was received."""
        target = callbell_sandbox.messages[0]["received_at"] + steps * interval
        time.sleep(max(0.0, target - time.time()))

    def test_progresses_with_time(self, client: requests.Session) -> None:
        # Each check lands half an interval from a step: 0.125 s of slack for a busy machine (with
        # 0.05 s intervals, a 25 ms scheduling delay on a loaded 2-core runner read the next status).
        interval = 0.25
        with CallbellSandbox(status_interval=interval) as callbell_sandbox:
            uuid = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
            seen = [self.status(client, callbell_sandbox, uuid).json()["message"]]
            for steps in (1.5, 2.5, 3.5, 6):
                self.wait_until(callbell_sandbox, steps, interval)
                seen.append(self.status(client, callbell_sandbox, uuid).json()["message"])
        assert [message["status"] for message in seen] == ["enqueued", "sent", "delivered", "read", "read"]
        assert all(message["uuid"] == uuid and message["messageStatusPayload"] == {} for message in seen)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(TEXT, id="to"),
            pytest.param({**TEXT, "to": None, "bsuid": "US.1"}, id="bsuid"),
        ],
    )
    def test_failing_recipient_ends_failed_with_reason(
        self, client: requests.Session, body: dict[str, Any]
    ) -> None:
        failing = {"+31612345678": "number not on WhatsApp", "US.1": "blocked"}
        with CallbellSandbox(status_interval=0.05, failing_recipients=failing) as callbell_sandbox:
            uuid = send(client, callbell_sandbox, body).json()["message"]["uuid"]
            assert self.status(client, callbell_sandbox, uuid).json()["message"]["status"] == "enqueued"
            self.wait_until(callbell_sandbox, 4)
            message = self.status(client, callbell_sandbox, uuid).json()["message"]
        assert message["status"] == "failed"
        assert message["messageStatusPayload"] == {"reason": failing[body["to"] or body["bsuid"]]}

    def test_unknown_uuid_is_404(self, callbell_sandbox: CallbellSandbox, client: requests.Session) -> None:
        assert self.status(client, callbell_sandbox, "0" * 32).status_code == 404


class TestDelete:
    def test_delete_answers_204_and_hides_the_message(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        uuid = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
        response = client.delete(f"{callbell_sandbox.url}/messages/{uuid}", timeout=5)
        assert response.status_code == 204
        assert response.content == b""
        assert client.get(f"{callbell_sandbox.url}/messages/status/{uuid}", timeout=5).status_code == 404
        assert client.delete(f"{callbell_sandbox.url}/messages/{uuid}", timeout=5).status_code == 404
        [stored] = callbell_sandbox.messages
        assert stored["deleted"] is True

    def test_unknown_uuid_is_404(self, callbell_sandbox: CallbellSandbox, client: requests.Session) -> None:
        assert client.delete(f"{callbell_sandbox.url}/messages/{'0' * 32}", timeout=5).status_code == 404


class TestPaging:
    def collect(self, client: requests.Session, url: str, key: str) -> list[dict[str, Any]]:
        """Follow ``meta.pages`` the way a client should, checking each page's meta."""
        items, page, pages = [], 1, 1
        while page <= pages:
            answer = client.get(url, params={"page": page}, timeout=5).json()
            assert answer["meta"]["page"] == page
            pages = answer["meta"]["pages"]
            items.extend(answer[key])
            page += 1
        return items

    def test_templates_pages_give_all_templates(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        first = client.get(f"{callbell_sandbox.url}/templates", timeout=5).json()
        assert first["meta"] == {"page": 1, "pages": 2}
        assert len(first["templates"]) == 2
        templates = self.collect(client, f"{callbell_sandbox.url}/templates", "templates")
        assert templates == list(DEFAULT_TEMPLATES)
        assert {t["status"] for t in templates} == {"approved", "pending", "rejected"}
        assert all(
            set(t) == {"uuid", "title", "text", "templateType", "category", "status", "createdAt"}
            for t in templates
        )

    def test_custom_items_and_page_size(self, client: requests.Session) -> None:
        templates = [{"uuid": f"{i:032x}", "title": f"t{i}", "status": "approved"} for i in range(7)]
        with CallbellSandbox(templates=templates, page_size=3) as callbell_sandbox:
            assert client.get(f"{callbell_sandbox.url}/templates", timeout=5).json()["meta"]["pages"] == 3
            assert self.collect(client, f"{callbell_sandbox.url}/templates", "templates") == templates

    @pytest.mark.parametrize(
        ("query", "types"),
        [
            pytest.param("", ["whatsapp", "telegram"], id="all"),
            pytest.param("?type=whatsapp", ["whatsapp"], id="type"),
            pytest.param("?type=telegram&active=true", ["telegram"], id="type-active"),
            pytest.param("?active=false", [], id="inactive"),
            pytest.param("?type=instagram", [], id="no-match"),
        ],
    )
    def test_channels_filter_before_paging(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, query: str, types: list[str]
    ) -> None:
        channels = self.collect(client, f"{callbell_sandbox.url}/channels{query}", "channels")
        assert [channel["type"] for channel in channels] == types

    def test_inactive_channels_are_filtered(self, client: requests.Session) -> None:
        channels = [{**DEFAULT_CHANNELS[0]}, {**DEFAULT_CHANNELS[1], "active": False}]
        with CallbellSandbox(channels=channels) as callbell_sandbox:
            answer = client.get(f"{callbell_sandbox.url}/channels?active=false", timeout=5).json()
        assert answer == {"channels": [channels[1]], "meta": {"page": 1, "pages": 1}}

    def test_page_past_the_end_is_empty(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        answer = client.get(f"{callbell_sandbox.url}/templates?page=9", timeout=5).json()
        assert answer == {"templates": [], "meta": {"page": 9, "pages": 2}}

    @pytest.mark.parametrize("page", [pytest.param("0", id="zero"), pytest.param("x", id="not-int")])
    def test_bad_page_is_400(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, page: str
    ) -> None:
        assert client.get(f"{callbell_sandbox.url}/templates?page={page}", timeout=5).status_code == 400


class TestFaults:
    def test_rate_limit_answers_429_with_retry_after(self, client: requests.Session) -> None:
        with CallbellSandbox(rate_limit=5) as callbell_sandbox:
            responses = [send(client, callbell_sandbox, TEXT) for _ in range(8)]
            assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
            assert all(int(r.headers["Retry-After"]) >= 1 for r in responses[5:])
            assert len(callbell_sandbox.messages) == 5
            callbell_sandbox.reset()  # clears the window too
            assert send(client, callbell_sandbox, TEXT).status_code == 200

    def test_rate_limit_window_slides(self, client: requests.Session) -> None:
        with CallbellSandbox(rate_limit=2) as callbell_sandbox:
            assert [send(client, callbell_sandbox, TEXT).status_code for _ in range(3)] == [200, 200, 429]
            time.sleep(1.05)
            assert send(client, callbell_sandbox, TEXT).status_code == 200

    def test_unauthenticated_requests_do_not_use_the_rate_limit(self, client: requests.Session) -> None:
        with CallbellSandbox(rate_limit=2) as callbell_sandbox:
            for _ in range(5):
                requests.post(f"{callbell_sandbox.url}/messages/send", json=TEXT, timeout=5)
            assert send(client, callbell_sandbox, TEXT).status_code == 200

    def test_error_rate_answers_503_before_storing(self, client: requests.Session) -> None:
        with CallbellSandbox(error_rate=1.0) as callbell_sandbox:
            response = send(client, callbell_sandbox, TEXT)
            assert response.status_code == 503
            assert response.json() == {"error": "sandbox injected failure"}
            assert callbell_sandbox.messages == []

    def test_flaky_recipient_is_refused_its_first_sends_only(self, client: requests.Session) -> None:
        other = {**TEXT, "to": "+31687654321"}
        with CallbellSandbox(flaky_recipients={TEXT["to"]: 2}) as callbell_sandbox:
            answers = [
                send(client, callbell_sandbox, body).status_code for body in (TEXT, other, TEXT, TEXT, TEXT)
            ]
            assert answers == [503, 200, 503, 200, 200]
            assert [m["body"]["to"] for m in callbell_sandbox.messages] == [
                other["to"],
                TEXT["to"],
                TEXT["to"],
            ]
            callbell_sandbox.reset()  # the refusals start over
            assert send(client, callbell_sandbox, TEXT).status_code == 503

    def test_drop_rate_closes_without_answer(self, client: requests.Session) -> None:
        with CallbellSandbox(drop_rate=1.0) as callbell_sandbox:
            with pytest.raises(requests.ConnectionError):
                send(client, callbell_sandbox, TEXT)
            assert callbell_sandbox.messages == []
            assert statuses(callbell_sandbox) == ["dropped"]

    def test_latency_delays_the_answer(self, client: requests.Session) -> None:
        with CallbellSandbox(latency=0.2) as callbell_sandbox:
            started = time.monotonic()
            assert send(client, callbell_sandbox, TEXT).status_code == 200
            assert time.monotonic() - started >= 0.2

    def test_seed_makes_faults_reproducible(self, client: requests.Session) -> None:
        def run() -> list[Any]:
            with CallbellSandbox(seed=7, error_rate=0.4, drop_rate=0.2) as callbell_sandbox:
                for _ in range(30):
                    with contextlib.suppress(requests.ConnectionError):
                        send(client, callbell_sandbox, TEXT)
                return statuses(callbell_sandbox)

        first = run()
        assert first == run()
        assert {200, 503, "dropped"} <= set(first)

    def test_configure_changes_knobs_while_running(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        callbell_sandbox.configure(error_rate=1.0)
        assert send(client, callbell_sandbox, TEXT).status_code == 503
        callbell_sandbox.configure(error_rate=0.0, failing_recipients={TEXT["to"]: "gone"}, status_interval=0)
        uuid = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
        status = client.get(f"{callbell_sandbox.url}/messages/status/{uuid}", timeout=5).json()["message"]
        assert status["status"] == "failed"

    @pytest.mark.parametrize(
        ("knobs", "error"),
        [
            pytest.param({"colour": "red"}, TypeError, id="unknown"),
            pytest.param({"error_rate": 1.5}, ValueError, id="error-rate"),
            pytest.param({"drop_rate": -0.1}, ValueError, id="drop-rate"),
            pytest.param({"rate_limit": 0}, ValueError, id="rate-limit"),
            pytest.param({"latency": -1}, ValueError, id="latency"),
            pytest.param({"flaky_recipients": {"+31612345678": -1}}, ValueError, id="flaky"),
        ],
    )
    def test_configure_rejects_bad_knobs(
        self, callbell_sandbox: CallbellSandbox, knobs: dict[str, Any], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            callbell_sandbox.configure(**knobs)

    def test_serves_600_requests_from_10_threads_at_once(self) -> None:
        # How fast it serves them is the benchmark's to measure (make bench sends through a sandbox at
        # 300 requests/s): a timed assertion here failed on a loaded 2-core machine.
        errors: list[BaseException] = []

        def worker(url: str) -> None:
            try:
                with requests.Session() as session:
                    session.headers["Authorization"] = f"Bearer {TOKEN}"
                    for _ in range(60):
                        assert session.post(url, json=TEXT, timeout=5).status_code == 200
            except BaseException as exc:  # reported below, in the test's own thread
                errors.append(exc)

        with CallbellSandbox(rate_limit=None) as callbell_sandbox:
            workers = [
                threading.Thread(target=worker, args=(f"{callbell_sandbox.url}/messages/send",))
                for _ in range(10)
            ]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
            assert not errors
            assert len(callbell_sandbox.messages) == 600
            assert len({message["uuid"] for message in callbell_sandbox.messages}) == 600


class TestInspection:
    def test_http_inspection_and_reset(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        uuid = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
        requests.get(f"{callbell_sandbox.url}/auth/me", timeout=5)
        base = f"http://127.0.0.1:{callbell_sandbox.port}/_sandbox"
        messages = requests.get(f"{base}/messages", timeout=5).json()["messages"]
        assert messages == callbell_sandbox.messages
        assert messages[0]["uuid"] == uuid
        recorded = requests.get(f"{base}/requests", timeout=5).json()["requests"]
        assert [(r["method"], r["path"], r["status"]) for r in recorded] == [
            ("POST", "/v1/messages/send", 200),
            ("GET", "/v1/auth/me", 401),
        ]
        assert all(isinstance(r["at"], float) for r in recorded)
        assert requests.post(f"{base}/reset", json={}, timeout=5).status_code == 200
        assert callbell_sandbox.messages == []
        assert callbell_sandbox.requests == []

    def test_inspection_ignores_faults_and_auth(self) -> None:
        with CallbellSandbox(error_rate=1.0, drop_rate=1.0, rate_limit=1) as callbell_sandbox:
            for _ in range(3):
                response = requests.get(
                    f"http://127.0.0.1:{callbell_sandbox.port}/_sandbox/messages", timeout=5
                )
                assert response.json() == {"messages": []}
            assert callbell_sandbox.requests == []

    def test_python_reset(self, callbell_sandbox: CallbellSandbox, client: requests.Session) -> None:
        send(client, callbell_sandbox, TEXT)
        callbell_sandbox.reset()
        assert (callbell_sandbox.messages, callbell_sandbox.requests) == ([], [])


class TestCli:
    @pytest.mark.parametrize(
        "signum", [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGINT, id="ctrl-c")]
    )
    def test_prints_connection_logs_messages_and_stops_cleanly(self, signum: int) -> None:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_callbell.sandbox",
                "--port",
                "0",
                "--token",
                "cli-token",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = read_lines_in_background(process)
        try:
            env_line = lines.get(timeout=10)
            assert env_line.startswith("export AIRFLOW_CONN_CALLBELL_DEFAULT='")
            connection = json.loads(shlex.split(env_line)[1].split("=", 1)[1])
            assert connection["password"] == "cli-token"
            assert lines.get(timeout=5).strip() == f"Callbell sandbox listening on {connection['host']}"
            inbox = lines.get(timeout=5).strip().removeprefix("Web inbox: ")
            assert inbox == connection["host"].removesuffix("v1")
            assert "<title>Callbell sandbox inbox</title>" in requests.get(inbox, timeout=5).text
            response = requests.post(
                f"{connection['host']}/messages/send",
                json=TEXT,
                headers={"Authorization": "Bearer cli-token"},
                timeout=5,
            )
            uuid = response.json()["message"]["uuid"]
            log_line = lines.get(timeout=5).strip()
            assert log_line == f"[sandbox] text message {uuid} to +31612345678 via whatsapp: Hello!"
            process.send_signal(signum)
            assert process.wait(timeout=5) == 0
        finally:
            process.kill()
            process.wait()


class TestPytestPlugin:
    INNER_TEST = """
        import json
        import os

        import requests

        def test_sends_through_the_sandbox(callbell_sandbox):
            connection = json.loads(os.environ["AIRFLOW_CONN_CALLBELL_DEFAULT"])
            assert connection == json.loads(callbell_sandbox.connection_json)
            response = requests.post(
                connection["host"] + "/messages/send",
                json={"to": "+31612345678", "from": "whatsapp", "type": "text", "content": {"text": "hi"}},
                headers={"Authorization": "Bearer " + connection["password"]},
                timeout=5,
            )
            assert response.status_code == 200
            assert [m["uuid"] for m in callbell_sandbox.messages] == [response.json()["message"]["uuid"]]
    """

    @pytest.mark.parametrize(
        "enable", [pytest.param("conftest", id="conftest"), pytest.param("-p", id="option")]
    )
    def test_fixture_works_for_a_user(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, enable: str
    ) -> None:
        monkeypatch.delenv("AIRFLOW_CONN_CALLBELL_DEFAULT", raising=False)
        # Only the plugin under test (loading hypothesis & co. would cost a second and prove nothing).
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        pytester.makepyfile(self.INNER_TEST)
        plugin = "airflow_provider_callbell.sandbox.pytest_plugin"
        if enable == "conftest":
            pytester.makeconftest(f"pytest_plugins = [{plugin!r}]")
            result = pytester.runpytest()
        else:
            result = pytester.runpytest("-p", plugin)
        result.assert_outcomes(passed=1)
        assert "AIRFLOW_CONN_CALLBELL_DEFAULT" not in os.environ  # the fixture restored the environment

    @pytest.mark.callbell_sandbox(token="marked-token", failing_recipients={"+31600000000": "blocked"})
    def test_the_marker_sets_the_fixtures_options(self, callbell_sandbox: CallbellSandbox) -> None:
        assert callbell_sandbox.token == "marked-token"
        assert json.loads(os.environ["AIRFLOW_CONN_CALLBELL_DEFAULT"])["password"] == "marked-token"
        with requests.Session() as session:
            session.headers["Authorization"] = "Bearer marked-token"
            uuid = send(session, callbell_sandbox, {**TEXT, "to": "+31600000000"}).json()["message"]["uuid"]
            time.sleep(0.2)  # the module's marker: one status step every 0.05 s
            status = session.get(f"{callbell_sandbox.url}/messages/status/{uuid}", timeout=5).json()
        assert status["message"]["status"] == "failed"
