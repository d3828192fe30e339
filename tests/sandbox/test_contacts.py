"""Tests of the sandbox's contacts, conversations, simulated answers and auto-reply (issue 14).

The sandbox must list a conversation the way Callbell documents ``GET /contacts/:uuid/messages``:
newest first, outgoing messages ``sent`` with their uuid, answers ``received`` without one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.sandbox.server import (
    BUSINESS_NUMBER,
    DEFAULT_CHANNELS,
    DEFAULT_TEMPLATES,
    InboundValidationError,
)
from tests.helpers import read_lines_in_background
from tests.sandbox.helpers import TEXT, send

pytestmark = pytest.mark.callbell_sandbox(status_interval=0.05)

PHONE = "+31612345678"
ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def inbound(callbell_sandbox: CallbellSandbox, body: Any) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{callbell_sandbox.port}/_sandbox/inbound", json=body, timeout=5)


def contact_by_phone(
    client: requests.Session, callbell_sandbox: CallbellSandbox, number: str, **params: str
) -> requests.Response:
    return client.get(f"{callbell_sandbox.url}/contacts/phone/{number}", params=params, timeout=5)


def listing(
    client: requests.Session, callbell_sandbox: CallbellSandbox, contact_uuid: str, page: int = 1
) -> Any:
    response = client.get(
        f"{callbell_sandbox.url}/contacts/{contact_uuid}/messages", params={"page": page}, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestContacts:
    def test_first_send_creates_the_contact_and_later_sends_reuse_it(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        send(client, callbell_sandbox, TEXT)
        send(client, callbell_sandbox, {**TEXT, "to": "+31 6 1234 5678"})  # same number, other spelling
        send(client, callbell_sandbox, {**TEXT, "to": "+31687654321"})
        assert [c["phoneNumber"] for c in callbell_sandbox.contacts] == [PHONE, "+31687654321"]
        contact = contact_by_phone(client, callbell_sandbox, PHONE).json()["contact"]
        assert contact == callbell_sandbox.contacts[0]
        assert re.fullmatch(r"[0-9a-f]{32}", contact["uuid"])
        assert contact["source"] == "whatsapp"
        assert ISO_SECONDS.fullmatch(contact["createdAt"])
        assert contact["href"] == f"https://dash.callbell.eu/contacts/{contact['uuid']}"
        assert contact["conversationHref"].startswith("https://dash.callbell.eu/chat/")

    @pytest.mark.parametrize(
        "spelling",
        [
            pytest.param("+31612345678", id="plus"),
            pytest.param("%2B31612345678", id="encoded-plus"),
            pytest.param("31612345678", id="digits"),
            pytest.param("+31%206%201234%205678", id="spaces"),
        ],
    )
    def test_phone_lookup_ignores_formatting(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, spelling: str
    ) -> None:
        send(client, callbell_sandbox, TEXT)
        response = contact_by_phone(client, callbell_sandbox, spelling)
        assert response.status_code == 200
        assert response.json()["contact"]["phoneNumber"] == PHONE

    def test_first_answer_creates_the_contact_and_a_send_joins_it(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        callbell_sandbox.receive(PHONE, "hi, anyone there?")
        (contact,) = callbell_sandbox.contacts
        uuid = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
        assert [c["uuid"] for c in callbell_sandbox.contacts] == [contact["uuid"]]
        assert [m.get("uuid") for m in callbell_sandbox.conversation(contact["uuid"])] == [uuid, None]

    def test_get_contact_by_uuid(self, callbell_sandbox: CallbellSandbox, client: requests.Session) -> None:
        send(client, callbell_sandbox, TEXT)
        (contact,) = callbell_sandbox.contacts
        response = client.get(f"{callbell_sandbox.url}/contacts/{contact['uuid']}", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"contact": contact}

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param("/contacts/phone/+31600000000", id="unknown-phone"),
            pytest.param("/contacts/0123456789abcdef0123456789abcdef", id="unknown-uuid"),
            pytest.param("/contacts/0123456789abcdef0123456789abcdef/messages", id="unknown-uuid-messages"),
            pytest.param(f"/contacts/phone/{PHONE}?channel_uuid=nope", id="unknown-channel"),
        ],
    )
    def test_unknown_is_json_404(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, path: str
    ) -> None:
        send(client, callbell_sandbox, TEXT)
        response = client.get(f"{callbell_sandbox.url}{path}", timeout=5)
        assert response.status_code == 404
        assert "error" in response.json()

    def test_channel_uuid_searches_that_channel(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        telegram = next(c for c in DEFAULT_CHANNELS if c["type"] == "telegram")
        send(client, callbell_sandbox, {**TEXT, "from": "telegram", "to": "tg-4242"})
        assert (
            contact_by_phone(client, callbell_sandbox, "tg-4242").status_code == 404
        )  # main WhatsApp channel
        found = contact_by_phone(client, callbell_sandbox, "tg-4242", channel_uuid=telegram["uuid"])
        assert found.status_code == 200
        assert found.json()["contact"]["source"] == "telegram"

    def test_bsuid_recipient_gets_its_own_contact(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        body = {key: value for key, value in TEXT.items() if key != "to"}
        send(client, callbell_sandbox, {**body, "bsuid": "BSUID-1"})
        (contact,) = callbell_sandbox.contacts
        assert (contact["bsuid"], contact["phoneNumber"]) == ("BSUID-1", None)
        assert callbell_sandbox.conversation(contact["uuid"])[0]["to"] == "BSUID-1"

    def test_send_fields_return_the_real_contact(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        first = send(client, callbell_sandbox, {**TEXT, "fields": "contact,conversation"}).json()["message"]
        second = send(client, callbell_sandbox, {**TEXT, "fields": "contact,conversation"}).json()["message"]
        assert first["contact"] == second["contact"] == callbell_sandbox.contacts[0]
        assert first["conversation"] == second["conversation"]
        assert first["conversation"]["href"] == callbell_sandbox.contacts[0]["conversationHref"]

    def test_contact_endpoints_need_the_token(self, callbell_sandbox: CallbellSandbox) -> None:
        callbell_sandbox.receive(PHONE, "yes")
        contact_uuid = callbell_sandbox.contacts[0]["uuid"]
        for path in (
            f"/contacts/phone/{PHONE}",
            f"/contacts/{contact_uuid}",
            f"/contacts/{contact_uuid}/messages",
        ):
            assert requests.get(f"{callbell_sandbox.url}{path}", timeout=5).status_code == 401

    def test_reset_forgets_contacts(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        send(client, callbell_sandbox, TEXT)
        callbell_sandbox.reset()
        assert callbell_sandbox.contacts == []
        assert contact_by_phone(client, callbell_sandbox, PHONE).status_code == 404


class TestConversation:
    def test_lists_newest_first_with_sent_and_received_as_documented(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        first = send(client, callbell_sandbox, {**TEXT, "content": {"text": "Publish? YES or NO"}}).json()[
            "message"
        ]
        callbell_sandbox.receive(PHONE, "maybe")
        second = send(
            client, callbell_sandbox, {**TEXT, "content": {"text": "Please answer YES or NO"}}
        ).json()["message"]
        callbell_sandbox.receive("+31 6 1234 5678", "yes")
        contact_uuid = callbell_sandbox.contacts[0]["uuid"]
        data = listing(client, callbell_sandbox, contact_uuid)
        assert data["meta"] == {"page": 1, "pages": 1}
        messages = data["messages"]
        assert [(m["status"], m["text"], m.get("uuid")) for m in messages] == [
            ("received", "yes", None),
            ("sent", "Please answer YES or NO", second["uuid"]),
            ("received", "maybe", None),
            ("sent", "Publish? YES or NO", first["uuid"]),
        ]
        assert messages[0] == {
            "text": "yes",
            "createdAt": messages[0]["createdAt"],
            "status": "received",
            "channel": "whatsapp",
            "from": "31612345678",
            "to": BUSINESS_NUMBER,
        }
        assert (messages[1]["from"], messages[1]["to"], messages[1]["channel"]) == (
            BUSINESS_NUMBER,
            "31612345678",
            "whatsapp",
        )
        assert all(ISO_SECONDS.fullmatch(m["createdAt"]) for m in messages)
        assert [m["createdAt"] for m in messages] == sorted((m["createdAt"] for m in messages), reverse=True)
        assert callbell_sandbox.conversation(contact_uuid) == messages

    def test_pages_hold_messages_page_size_newest_first(self, client: requests.Session) -> None:
        with CallbellSandbox(messages_page_size=2) as callbell_sandbox:
            for number in range(5):
                callbell_sandbox.receive(PHONE, f"answer {number}")
            contact_uuid = callbell_sandbox.contacts[0]["uuid"]
            pages = [listing(client, callbell_sandbox, contact_uuid, page) for page in (1, 2, 3, 4)]
        assert [[m["text"] for m in page["messages"]] for page in pages] == [
            ["answer 4", "answer 3"],
            ["answer 2", "answer 1"],
            ["answer 0"],
            [],
        ]
        assert [page["meta"] for page in pages] == [{"page": n, "pages": 3} for n in (1, 2, 3, 4)]

    @pytest.mark.parametrize("page", ["0", "-1", "x"])
    def test_bad_page_is_400(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, page: str
    ) -> None:
        callbell_sandbox.receive(PHONE, "yes")
        url = f"{callbell_sandbox.url}/contacts/{callbell_sandbox.contacts[0]['uuid']}/messages?page={page}"
        response = client.get(url, timeout=5)
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "page"

    def test_deleted_messages_leave_the_conversation(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        kept = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
        gone = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
        assert client.delete(f"{callbell_sandbox.url}/messages/{gone}", timeout=5).status_code == 204
        assert [m["uuid"] for m in callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])] == [
            kept
        ]

    @pytest.mark.parametrize(
        ("extra", "text"),
        [
            pytest.param({"content": {"text": "Ada"}}, "Hello Ada", id="single-placeholder"),
            pytest.param({"content": {}, "template_values": ["Bob"]}, "Hello Bob", id="template-values"),
        ],
    )
    def test_template_is_listed_with_its_text_filled(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session, extra: dict[str, Any], text: str
    ) -> None:
        body = {**TEXT, "template_uuid": DEFAULT_TEMPLATES[0]["uuid"], "optin_contact": True, **extra}
        assert send(client, callbell_sandbox, body).status_code == 200
        assert callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])[0]["text"] == text

    def test_image_without_caption_has_no_text(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        image = {**TEXT, "type": "image", "content": {"url": "https://x.test/a.png"}}
        send(client, callbell_sandbox, image)
        assert callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])[0]["text"] is None


class TestInbound:
    def test_http_inbound_answers_201_with_the_stored_message(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        response = inbound(callbell_sandbox, {"from": PHONE, "text": "yes", "channel": "whatsapp"})
        assert response.status_code == 201
        message = response.json()["message"]
        assert (message["status"], message["text"], message["from"]) == ("received", "yes", "31612345678")
        assert "uuid" not in message
        contact = contact_by_phone(client, callbell_sandbox, PHONE).json()["contact"]
        assert listing(client, callbell_sandbox, contact["uuid"])["messages"] == [message]
        assert callbell_sandbox.requests[-1]["path"] == f"/v1/contacts/{contact['uuid']}/messages"
        assert all(
            r["path"].startswith("/v1/") for r in callbell_sandbox.requests
        )  # inbound is not an API call

    def test_channel_defaults_to_whatsapp_and_other_channels_take_ids(
        self, callbell_sandbox: CallbellSandbox
    ) -> None:
        assert (
            inbound(callbell_sandbox, {"from": PHONE, "text": "ok"}).json()["message"]["channel"]
            == "whatsapp"
        )
        telegram = inbound(callbell_sandbox, {"from": "tg-4242", "text": "ok", "channel": "telegram"})
        assert telegram.status_code == 201
        assert [c["source"] for c in callbell_sandbox.contacts] == ["whatsapp", "telegram"]

    def test_needs_no_token_and_ignores_faults(self) -> None:
        with CallbellSandbox(error_rate=1.0, drop_rate=1.0, rate_limit=1) as callbell_sandbox:
            for _ in range(3):
                assert inbound(callbell_sandbox, {"from": PHONE, "text": "yes"}).status_code == 201

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            pytest.param({"text": "yes"}, "from", id="no-from"),
            pytest.param({"from": "  ", "text": "yes"}, "from", id="blank-from"),
            pytest.param({"from": "not a phone", "text": "yes"}, "from", id="from-not-a-phone"),
            pytest.param({"from": 31612345678, "text": "yes"}, "from", id="from-not-a-string"),
            pytest.param({"from": PHONE}, "text", id="no-text"),
            pytest.param({"from": PHONE, "text": " "}, "text", id="blank-text"),
            pytest.param({"from": PHONE, "text": "yes", "channel": "sms"}, "channel", id="unknown-channel"),
        ],
    )
    def test_bad_answer_is_422_naming_the_field(
        self, callbell_sandbox: CallbellSandbox, body: dict[str, Any], field: str
    ) -> None:
        response = inbound(callbell_sandbox, body)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field
        assert callbell_sandbox.contacts == []

    def test_body_not_a_json_object_is_400(self, callbell_sandbox: CallbellSandbox) -> None:
        url = f"http://127.0.0.1:{callbell_sandbox.port}/_sandbox/inbound"
        json_type = {"Content-Type": "application/json"}
        assert requests.post(url, data=b"yes", headers=json_type, timeout=5).status_code == 400
        assert requests.post(url, json=["yes"], timeout=5).status_code == 400

    def test_python_receive_validates_like_http(self, callbell_sandbox: CallbellSandbox) -> None:
        with pytest.raises(InboundValidationError, match="from: must be a phone number") as caught:
            callbell_sandbox.receive("nobody", "yes")
        assert caught.value.field == "from"
        with pytest.raises(InboundValidationError, match="channel"):
            callbell_sandbox.receive(PHONE, "yes", channel="sms")
        assert callbell_sandbox.contacts == []


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class TestAutoReply:
    def test_without_delay_every_send_is_answered_at_once(self, client: requests.Session) -> None:
        with CallbellSandbox(auto_reply="YES") as callbell_sandbox:
            uuid = send(client, callbell_sandbox, TEXT).json()["message"]["uuid"]
            messages = callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])
        assert [(m["status"], m["text"], m.get("uuid")) for m in messages] == [
            ("received", "YES", None),
            ("sent", "Hello!", uuid),
        ]

    def test_delayed_answer_arrives_later(self, client: requests.Session) -> None:
        with CallbellSandbox(auto_reply="ACK", auto_reply_delay=0.3) as callbell_sandbox:
            started = time.monotonic()
            send(client, callbell_sandbox, TEXT)
            contact_uuid = callbell_sandbox.contacts[0]["uuid"]
            assert [m["status"] for m in callbell_sandbox.conversation(contact_uuid)] == ["sent"]
            wait_for(lambda: len(callbell_sandbox.conversation(contact_uuid)) == 2)
            assert time.monotonic() - started >= 0.3
            assert callbell_sandbox.conversation(contact_uuid)[0]["text"] == "ACK"

    def test_failing_recipient_gets_no_answer(self, client: requests.Session) -> None:
        with CallbellSandbox(
            auto_reply="YES", failing_recipients={PHONE: "not on WhatsApp"}
        ) as callbell_sandbox:
            send(client, callbell_sandbox, TEXT)
            assert [
                m["status"] for m in callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])
            ] == ["sent"]

    def test_stop_cancels_pending_answers_and_leaves_no_thread(self, client: requests.Session) -> None:
        threads_before = threading.active_count()
        callbell_sandbox = CallbellSandbox(auto_reply="late", auto_reply_delay=30)
        with callbell_sandbox:
            for _ in range(3):
                send(client, callbell_sandbox, TEXT)
            assert threading.active_count() >= threads_before + 3
            started = time.monotonic()
        assert time.monotonic() - started < 5
        assert threading.active_count() == threads_before
        assert [m["status"] for m in callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])] == [
            "sent"
        ] * 3

    def test_configure_turns_it_on_and_off_live(
        self, callbell_sandbox: CallbellSandbox, client: requests.Session
    ) -> None:
        callbell_sandbox.configure(auto_reply="ok")
        send(client, callbell_sandbox, TEXT)
        callbell_sandbox.configure(auto_reply=None)
        send(client, callbell_sandbox, TEXT)
        statuses = [m["status"] for m in callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])]
        assert statuses == ["sent", "received", "sent"]

    @pytest.mark.parametrize(
        "knobs",
        [
            pytest.param({"auto_reply_delay": -1}, id="negative-delay"),
            pytest.param({"auto_reply": ""}, id="empty-text"),
            pytest.param({"auto_reply": "  "}, id="blank-text"),
        ],
    )
    def test_bad_knobs_are_refused(self, callbell_sandbox: CallbellSandbox, knobs: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="auto_reply"):
            callbell_sandbox.configure(**knobs)
        with pytest.raises(ValueError, match="auto_reply"):
            CallbellSandbox(**knobs)

    def test_cli_auto_reply_answers_and_logs(self) -> None:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_callbell.sandbox",
                "--port",
                "0",
                "--auto-reply",
                "YES please",
                "--auto-reply-delay",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = read_lines_in_background(process)
        try:
            env_line = next(
                line for line in iter(lambda: lines.get(timeout=10), "") if "AIRFLOW_CONN" in line
            )
            connection = json.loads(env_line.strip().split("=", 1)[1].strip("'"))
            headers = {"Authorization": f"Bearer {connection['password']}"}
            response = requests.post(
                f"{connection['host']}/messages/send", json=TEXT, headers=headers, timeout=5
            )
            assert response.status_code == 200
            # The lines after the export line: where it listens, the inbox, the message, its answer.
            logged = next(
                line.strip() for line in iter(lambda: lines.get(timeout=5), "") if "auto-reply" in line
            )
            assert logged == "[sandbox] auto-reply from 31612345678 via whatsapp: YES please"
            contact = requests.get(
                f"{connection['host']}/contacts/phone/{PHONE}", headers=headers, timeout=5
            ).json()["contact"]
            messages = requests.get(
                f"{connection['host']}/contacts/{contact['uuid']}/messages", headers=headers, timeout=5
            ).json()["messages"]
            assert [m["text"] for m in messages] == ["YES please", "Hello!"]
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            finally:
                process.kill()
                process.wait()
