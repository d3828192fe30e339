"""The inbox's server side without a browser: the page, its JSON views and the knobs route."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_callbell.sandbox.server import DEFAULT_TEMPLATES

if TYPE_CHECKING:
    from airflow_provider_callbell.sandbox import CallbellSandbox

pytestmark = pytest.mark.callbell_sandbox(rate_limit=None)

PHONE = "+31612345678"


def root(callbell_sandbox: CallbellSandbox) -> str:
    return f"http://{callbell_sandbox.host}:{callbell_sandbox.port}"


def send(callbell_sandbox: CallbellSandbox, to: str = PHONE, **body: Any) -> str:
    payload = {"to": to, "from": "whatsapp", "type": "text", "content": {"text": "hi"}, **body}
    answer = requests.post(
        f"{callbell_sandbox.url}/messages/send",
        json=payload,
        headers={"Authorization": f"Bearer {callbell_sandbox.token}"},
        timeout=5,
    )
    answer.raise_for_status()
    uuid: str = answer.json()["message"]["uuid"]
    return uuid


def get(callbell_sandbox: CallbellSandbox, path: str, **params: Any) -> Any:
    answer = requests.get(root(callbell_sandbox) + path, params=params, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def conversation(callbell_sandbox: CallbellSandbox, phone: str = PHONE) -> str:
    (contact,) = [c for c in callbell_sandbox.contacts if c["phoneNumber"] == phone]
    uuid: str = contact["uuid"]
    return uuid


class TestPage:
    def test_root_serves_the_inbox_without_a_token_and_with_a_strict_policy(
        self, callbell_sandbox: CallbellSandbox
    ) -> None:
        page = requests.get(root(callbell_sandbox) + "/", timeout=5)
        assert page.status_code == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "<title>Callbell sandbox inbox</title>" in page.text
        policy = page.headers["Content-Security-Policy"]
        (nonce,) = set(re.findall(r"'nonce-([^']+)'", policy))
        # The nonce is fresh per answer, and only the page's own script and style carry it.
        assert page.text.count(f'nonce="{nonce}"') == 2
        assert nonce not in requests.get(root(callbell_sandbox) + "/", timeout=5).text
        assert "default-src 'none'" in policy
        assert "connect-src 'self'" in policy

    def test_the_page_loads_nothing_from_elsewhere(self, callbell_sandbox: CallbellSandbox) -> None:
        html = requests.get(root(callbell_sandbox) + "/", timeout=5).text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
        assert "@import" not in html
        assert "url(" not in html

    def test_the_page_is_not_an_api_route(self, callbell_sandbox: CallbellSandbox) -> None:
        assert (
            requests.get(f"{callbell_sandbox.url}/", timeout=5).status_code == 401
        )  # /v1/ still needs a token
        assert callbell_sandbox.requests == [
            {"method": "GET", "path": "/v1/", "status": 401, "at": callbell_sandbox.requests[0]["at"]}
        ]


class TestViews:
    def test_conversations_newest_activity_first_with_counts(self, callbell_sandbox: CallbellSandbox) -> None:
        send(callbell_sandbox, PHONE)
        send(callbell_sandbox, "+31687654321", content={"text": "x" * 200})
        send(callbell_sandbox, PHONE)
        callbell_sandbox.receive("+31687654321", "yes")
        listed = get(callbell_sandbox, "/_sandbox/inbox/conversations")
        assert [(c["contact"], c["count"], c["last_text"]) for c in listed["conversations"]] == [
            ("+31687654321", 2, "yes"),
            (PHONE, 2, "hi"),
        ]
        assert (listed["total"], listed["messages"]) == (2, 4)

    def test_a_deleted_message_leaves_the_inbox(self, callbell_sandbox: CallbellSandbox) -> None:
        kept, gone = send(callbell_sandbox), send(callbell_sandbox)
        requests.delete(
            f"{callbell_sandbox.url}/messages/{gone}",
            headers={"Authorization": f"Bearer {callbell_sandbox.token}"},
            timeout=5,
        ).raise_for_status()
        page = get(callbell_sandbox, "/_sandbox/inbox/messages", conversation=conversation(callbell_sandbox))
        assert [m["uuid"] for m in page["messages"]] == [kept]
        assert get(callbell_sandbox, "/_sandbox/inbox/conversations")["messages"] == 1

    def test_pages_of_a_conversation_oldest_first_then_older_on_request(
        self, callbell_sandbox: CallbellSandbox
    ) -> None:
        sent = [send(callbell_sandbox, content={"text": f"m{i}"}) for i in range(60)]
        callbell_sandbox.receive(PHONE, "an answer")
        contact = conversation(callbell_sandbox)
        newest = get(callbell_sandbox, "/_sandbox/inbox/messages", conversation=contact)
        assert len(newest["messages"]) == 50
        assert newest["more"]
        assert [m["uuid"] for m in newest["messages"][:-1]] == sent[11:]
        assert newest["messages"][-1] | {"at": 0} == {
            "key": "60",
            "channel": "whatsapp",
            "uuid": None,
            "direction": "in",
            "type": "text",
            "text": "an answer",
            "rich": ["an answer"],
            "at": 0,
            "status": "received",
            "metadata": {},
            "template": None,
        }
        older = get(
            callbell_sandbox,
            "/_sandbox/inbox/messages",
            conversation=contact,
            before=newest["messages"][0]["key"],
        )
        assert [m["uuid"] for m in older["messages"]] == sent[:11]
        assert older["more"] is False

    def test_a_bubble_carries_template_media_metadata_and_failure(
        self, callbell_sandbox: CallbellSandbox
    ) -> None:
        callbell_sandbox.configure(failing_recipients={PHONE: "not on WhatsApp"}, status_interval=0)
        template = DEFAULT_TEMPLATES[0]
        send(
            callbell_sandbox,
            content={"text": "Ada"},
            template_uuid=template["uuid"],
            optin_contact=True,
            metadata={"run": "1"},
        )
        send(callbell_sandbox, type="document", content={"url": "https://x.test/files/q3%20report.pdf"})
        first, second = get(
            callbell_sandbox, "/_sandbox/inbox/messages", conversation=conversation(callbell_sandbox)
        )["messages"]
        assert first["template"] == {
            "uuid": template["uuid"],
            "title": "welcome",
            "values": ["Ada"],
            "text": "Hello Ada",
            "rich": ["Hello Ada"],
        }
        assert first["metadata"] == {"run": "1"}
        assert (first["status"], first["reason"]) == ("failed", "not on WhatsApp")
        assert (second["type"], second["filename"]) == ("document", "q3 report.pdf")


class TestChanges:
    def test_new_messages_and_moved_statuses_since_the_last_poll(
        self, callbell_sandbox: CallbellSandbox
    ) -> None:
        first = send(callbell_sandbox)
        contact = conversation(callbell_sandbox)
        poll = get(callbell_sandbox, "/_sandbox/inbox/changes", conversation=contact, since=0)
        since = poll["now"]
        assert [m["uuid"] for m in poll["changed"]] == [first]
        quiet = get(callbell_sandbox, "/_sandbox/inbox/changes", conversation=contact, since=since)
        assert quiet["changed"] == []  # nothing new, and the status did not move in between

        time.sleep(0.25)  # one status step
        second = send(callbell_sandbox)
        moved = get(callbell_sandbox, "/_sandbox/inbox/changes", conversation=contact, since=since)
        assert [(m["uuid"], m["status"]) for m in moved["changed"]] == [(first, "sent"), (second, "enqueued")]
        assert moved["conversations"][0]["count"] == 2

    def test_a_burst_larger_than_a_page_asks_for_a_reload(self, callbell_sandbox: CallbellSandbox) -> None:
        send(callbell_sandbox)
        contact = conversation(callbell_sandbox)
        since = get(callbell_sandbox, "/_sandbox/inbox/changes", conversation=contact, since=0)["now"]
        for _ in range(51):
            send(callbell_sandbox)
        burst = get(callbell_sandbox, "/_sandbox/inbox/changes", conversation=contact, since=since)
        assert burst["reload"] is True
        assert len(burst["changed"]) == 50

    @pytest.mark.parametrize(
        ("path", "params", "field"),
        [
            pytest.param("/_sandbox/inbox/messages", {}, "conversation", id="messages-without-conversation"),
            pytest.param(
                "/_sandbox/inbox/messages", {"conversation": "x", "before": "a"}, "before", id="bad-before"
            ),
            pytest.param("/_sandbox/inbox/changes", {"since": "yesterday"}, "since", id="bad-since"),
        ],
    )
    def test_bad_queries_name_the_parameter(
        self, callbell_sandbox: CallbellSandbox, path: str, params: dict[str, str], field: str
    ) -> None:
        answer = requests.get(root(callbell_sandbox) + path, params=params, timeout=5)
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == field


class TestKnobs:
    def test_read_and_change_the_fault_knobs(self, callbell_sandbox: CallbellSandbox) -> None:
        url = root(callbell_sandbox) + "/_sandbox/knobs"
        assert requests.get(url, timeout=5).json() == {
            "latency": 0.0,
            "error_rate": 0.0,
            "drop_rate": 0.0,
            "rate_limit": None,
            "status_interval": 0.2,
        }
        changed = requests.post(url, json={"latency": 0.5, "error_rate": 1, "rate_limit": 5}, timeout=5)
        assert changed.json()["error_rate"] == 1.0
        assert (
            requests.post(f"{callbell_sandbox.url}/messages/send", timeout=5).status_code == 503
        )  # it applies
        assert requests.post(url, json={"rate_limit": 7}, timeout=5).json()["rate_limit"] == 7
        assert requests.post(url, json={"rate_limit": 0}, timeout=5).json()["rate_limit"] is None
        requests.post(url, json={"rate_limit": 7}, timeout=5)
        assert requests.post(url, json={"rate_limit": None}, timeout=5).json()["rate_limit"] is None

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            pytest.param({"latency": "slow"}, "latency", id="not-a-number"),
            pytest.param({"rate_limit": 2.5}, "rate_limit", id="fractional-rate-limit"),
            pytest.param({"error_rate": 2}, "knobs", id="out-of-range"),
            pytest.param({"token": "x"}, "token", id="not-a-knob"),
            pytest.param([1], "body", id="not-an-object"),
        ],
    )
    def test_bad_values_are_refused_naming_the_field(
        self, callbell_sandbox: CallbellSandbox, body: Any, field: str
    ) -> None:
        answer = requests.post(root(callbell_sandbox) + "/_sandbox/knobs", json=body, timeout=5)
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == field
        assert requests.get(root(callbell_sandbox) + "/_sandbox/knobs", timeout=5).json()["error_rate"] == 0.0
