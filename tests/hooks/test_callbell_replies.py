"""The hook's reading of replies: contacts by phone or uuid, and conversations read page by page, lazily."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_callbell import paging
from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellAuthError,
    CallbellInvalidResponseError,
    CallbellRateLimitError,
    CallbellValidationError,
)
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.retry import RetryPolicy
from tests.helpers import BASE_URL, TOKEN, UUID, set_connection

CONTACT_UUID = "414a6d692bd645ed803f2e7ce360d4c8"
CONTACT = {"uuid": CONTACT_UUID, "name": "John Doe", "phoneNumber": "+31 6 1234 5678"}
MESSAGES_URL = f"{BASE_URL}/contacts/{CONTACT_UUID}/messages"


def msg(status: str, created: str, uuid: str | None = None, text: str = "x") -> dict[str, Any]:
    message = {"text": text, "createdAt": created, "status": status, "channel": "whatsapp"}
    if uuid is not None:
        message["uuid"] = uuid
    return message


def other_uuid(n: int) -> str:
    return f"{n:032x}"


def page_of_its_number(request: Any, _: Any) -> dict[str, Any]:
    """An answer whose one message differs per page, as a server honouring ``page`` gives."""
    return {"messages": [msg("received", "2026-11-30T08:00:00Z", text=f"page {request.qs['page'][0]}")]}


class TestGetContact:
    def test_by_phone_encodes_the_number_and_returns_the_contact(self, callbell_conn, requests_mock):
        route = requests_mock.get(f"{BASE_URL}/contacts/phone/%2B31612345678", json={"contact": CONTACT})
        assert CallbellHook().get_contact_by_phone("+31 6 1234-5678") == CONTACT
        (request,) = route.request_history
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.qs == {}

    def test_channel_uuid_argument_then_connection_extra(self, monkeypatch, requests_mock):
        set_connection(monkeypatch, extra={"channel_uuid": "extra-channel"})
        route = requests_mock.get(f"{BASE_URL}/contacts/phone/%2B31612345678", json={"contact": CONTACT})
        CallbellHook().get_contact_by_phone("+31612345678")
        CallbellHook().get_contact_by_phone("+31612345678", channel_uuid="given-channel")
        assert [r.qs["channel_uuid"] for r in route.request_history] == [["extra-channel"], ["given-channel"]]

    def test_unknown_number_is_none(self, callbell_conn, requests_mock):
        requests_mock.get(
            f"{BASE_URL}/contacts/phone/%2B31612345678", status_code=404, json={"error": "nope"}
        )
        assert CallbellHook().get_contact_by_phone("+31612345678") is None

    def test_a_404_from_a_base_url_without_v1_is_an_error_not_an_unknown_number(
        self, monkeypatch, requests_mock
    ):
        set_connection(monkeypatch, host="https://api.callbell.eu")
        requests_mock.get("https://api.callbell.eu/contacts/phone/%2B31612345678", status_code=404)
        with pytest.raises(CallbellAPIError, match="does not end with /v1") as caught:
            CallbellHook().get_contact_by_phone("+31612345678")
        assert caught.value.status_code == 404

    def test_other_errors_are_typed(self, callbell_conn, requests_mock):
        requests_mock.get(f"{BASE_URL}/contacts/phone/%2B31612345678", status_code=401, text="bad token")
        with pytest.raises(CallbellAuthError) as caught:
            CallbellHook().get_contact_by_phone("+31612345678")
        assert caught.value.status_code == 401
        assert TOKEN not in str(caught.value)

    @pytest.mark.parametrize("phone", ["", "call me", "+12", None, "../auth/me"])
    def test_bad_phone_sends_nothing(self, callbell_conn, requests_mock, phone):
        with pytest.raises(CallbellValidationError, match="phone must be"):
            CallbellHook().get_contact_by_phone(phone)
        assert requests_mock.request_history == []

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param({"contact": CONTACT}, id="object"),
            pytest.param({"contact": [CONTACT]}, id="documented-list"),
        ],
    )
    def test_by_uuid(self, callbell_conn, requests_mock, answer):
        requests_mock.get(f"{BASE_URL}/contacts/{CONTACT_UUID}", json=answer)
        assert CallbellHook().get_contact(CONTACT_UUID) == CONTACT

    def test_by_uuid_rejects_a_bad_uuid_and_odd_answers(self, callbell_conn, requests_mock):
        with pytest.raises(CallbellValidationError, match="uuid must be a Callbell contact uuid"):
            CallbellHook().get_contact("../messages/send")
        requests_mock.get(f"{BASE_URL}/contacts/{CONTACT_UUID}", json={"contact": {"name": "no uuid"}})
        with pytest.raises(CallbellAPIError, match="'contact' holding a uuid"):
            CallbellHook().get_contact(CONTACT_UUID)


class TestListContactMessages:
    def test_is_lazy_and_stops_at_the_uuid_on_the_first_page(self, callbell_conn, requests_mock):
        page1 = [
            msg("received", "2026-11-30T08:00:05Z"),
            msg("sent", "2026-11-30T08:00:00Z", UUID),
            msg("received", "2026-11-30T07:00:00Z"),
        ]
        route = requests_mock.get(MESSAGES_URL, json={"messages": page1, "meta": {"page": 1, "pages": 9}})
        messages = CallbellHook().list_contact_messages(CONTACT_UUID, stop_at_uuid=UUID)
        assert route.call_count == 0  # nothing read before iterating
        assert list(messages) == page1[:2]  # the reference is the last one yielded
        assert [r.qs for r in route.request_history] == [{"page": ["1"]}]

    def test_follows_pages_until_the_uuid(self, callbell_conn, requests_mock):
        pages = {
            "1": [
                msg("received", "2026-11-30T08:00:09Z"),
                msg("sent", "2026-11-30T08:00:08Z", other_uuid(1)),
            ],
            "2": [msg("received", "2026-11-30T08:00:07Z"), msg("sent", "2026-11-30T08:00:06Z", UUID)],
            "3": [msg("received", "2026-11-30T08:00:01Z")],
        }
        route = requests_mock.get(
            MESSAGES_URL,
            json=lambda request, _: {"messages": pages[request.qs["page"][0]], "meta": {"pages": 3}},
        )
        messages = list(CallbellHook().list_contact_messages(CONTACT_UUID, stop_at_uuid=UUID))
        assert messages == pages["1"] + pages["2"]
        assert route.call_count == 2

    def test_since_stops_before_older_messages_in_whole_seconds(self, callbell_conn, requests_mock):
        listed = [
            msg("received", "2026-11-30T08:00:06Z", text="new"),
            msg("received", "2026-11-30T08:00:05Z", text="same second"),
            msg("received", "2026-11-30T08:00:04Z", text="old"),
            msg("received", "2026-11-30T08:00:09Z", text="never read"),
        ]
        requests_mock.get(MESSAGES_URL, json={"messages": listed})
        since = datetime(2026, 11, 30, 8, 0, 5, 700_000, tzinfo=timezone.utc)
        messages = CallbellHook().list_contact_messages(CONTACT_UUID, since=since)
        assert [m["text"] for m in messages] == ["new", "same second"]

    def test_since_skips_a_message_whose_time_cannot_be_read(self, callbell_conn, requests_mock):
        """Fail-closed: such a message is never "since" (an old "yes" must not pass), and the read goes on."""
        listed = [
            msg("received", "2026-11-30T08:00:06Z", text="new"),
            msg("received", "yesterday", text="old yes"),
            {"text": "no time", "status": "received"},
            msg("received", "2026-11-30T08:00:05Z", text="same second"),
            msg("received", "2026-11-30T08:00:04Z", text="old"),
        ]
        requests_mock.get(MESSAGES_URL, json={"messages": listed})
        since = datetime(2026, 11, 30, 8, 0, 5, tzinfo=timezone.utc)
        messages = CallbellHook().list_contact_messages(CONTACT_UUID, since=since)
        assert [m["text"] for m in messages] == ["new", "same second"]

    def test_without_meta_reads_until_an_empty_page(self, callbell_conn, requests_mock):
        answers = [{"json": {"messages": [msg("received", f"2026-11-30T08:00:0{n}Z")]}} for n in (3, 2, 1)]
        route = requests_mock.get(MESSAGES_URL, [*answers, {"json": {"messages": []}}])
        assert len(list(CallbellHook().list_contact_messages(CONTACT_UUID))) == 3
        assert [r.qs["page"] for r in route.request_history] == [["1"], ["2"], ["3"], ["4"]]

    def test_meta_pages_ends_the_read(self, callbell_conn, requests_mock):
        route = requests_mock.get(
            MESSAGES_URL,
            json={"messages": [msg("note", "2026-11-30T08:00:00Z")], "meta": {"page": 1, "pages": 1}},
        )
        assert len(list(CallbellHook().list_contact_messages(CONTACT_UUID))) == 1
        assert route.call_count == 1

    def test_max_pages(self, callbell_conn, requests_mock):
        route = requests_mock.get(MESSAGES_URL, json=page_of_its_number)
        assert (
            len(list(CallbellHook().list_contact_messages(CONTACT_UUID, stop_at_uuid=UUID, max_pages=3))) == 3
        )
        assert route.call_count == 3

    def test_pages_that_never_end_stop_at_the_cap(self, callbell_conn, requests_mock, monkeypatch):
        monkeypatch.setattr(paging, "MAX_PAGES", 5)
        route = requests_mock.get(
            MESSAGES_URL, json=lambda request, _: {**page_of_its_number(request, _), "meta": {"pages": 10**9}}
        )
        with pytest.raises(CallbellInvalidResponseError, match="more than 5 pages"):
            list(CallbellHook().list_contact_messages(CONTACT_UUID))
        assert route.call_count == 5

    @pytest.mark.parametrize("meta", [{"pages": 10**9}, None])
    def test_a_page_repeating_the_one_before_ends_the_read(self, callbell_conn, requests_mock, meta):
        """A server that ignores ``page`` is caught at the second page, as for the listings."""
        route = requests_mock.get(
            MESSAGES_URL, json={"messages": [msg("received", "2026-11-30T08:00:00Z")], "meta": meta}
        )
        with pytest.raises(CallbellInvalidResponseError, match="page 2 repeats page 1"):
            list(CallbellHook().list_contact_messages(CONTACT_UUID))
        assert route.call_count == 2

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param(
                {"contact_uuid": "../auth/me"}, "contact_uuid must be a Callbell contact uuid", id="contact"
            ),
            pytest.param({"stop_at_uuid": "yes"}, "stop_at_uuid must be a Callbell message uuid", id="stop"),
            pytest.param({"since": datetime(2026, 1, 1)}, "since must be a timezone-aware", id="naive-since"),
            pytest.param({"since": "2026-01-01"}, "since must be a timezone-aware", id="text-since"),
            pytest.param({"max_pages": 0}, "max_pages must be a whole number", id="max-pages"),
        ],
    )
    def test_bad_arguments_fail_at_the_call_before_any_request(
        self, callbell_conn, requests_mock, kwargs, match
    ):
        arguments = {"contact_uuid": CONTACT_UUID, **kwargs}
        with pytest.raises(CallbellValidationError, match=match):
            CallbellHook().list_contact_messages(**arguments)
        assert requests_mock.request_history == []

    @pytest.mark.parametrize("answer", [{"messages": "none"}, {"messages": ["text"]}, {"contact": {}}, []])
    def test_odd_answer_is_an_api_error(self, callbell_conn, requests_mock, answer):
        requests_mock.get(MESSAGES_URL, json=answer)
        with pytest.raises(CallbellAPIError, match="a list 'messages'"):
            list(CallbellHook().list_contact_messages(CONTACT_UUID))

    def test_rate_limit_is_typed_with_retry_after(self, callbell_conn, requests_mock):
        requests_mock.get(MESSAGES_URL, status_code=429, headers={"Retry-After": "7"}, text="slow down")
        hook = CallbellHook(retry_policy=RetryPolicy(max_retries=0))
        with pytest.raises(CallbellRateLimitError) as caught:
            list(hook.list_contact_messages(CONTACT_UUID))
        assert caught.value.retry_after == 7
        assert caught.value.endpoint == f"GET /contacts/{CONTACT_UUID}/messages"


class TestAsync:
    def test_async_reads_match_the_sync_ones(self, callbell_conn, requests_mock, async_answers):
        import httpx

        pages = [
            [msg("received", "2026-11-30T08:00:09Z"), msg("sent", "2026-11-30T08:00:08Z", other_uuid(1))],
            [msg("received", "2026-11-30T08:00:07Z"), msg("sent", "2026-11-30T08:00:06Z", UUID)],
        ]
        answers, seen = async_answers
        answers.append(httpx.Response(200, json={"contact": CONTACT}))
        answers.extend(httpx.Response(200, json={"messages": page, "meta": {"pages": 5}}) for page in pages)
        hook = CallbellHook()

        async def read() -> tuple[Any, list[dict[str, Any]]]:
            contact = await hook.aget_contact_by_phone("+31 6 1234 5678", channel_uuid="c1")
            messages = [m async for m in hook.alist_contact_messages(contact["uuid"], stop_at_uuid=UUID)]
            return contact, messages

        contact, messages = asyncio.run(read())
        assert contact == CONTACT
        assert messages == pages[0] + pages[1]
        assert [str(r.url) for r in seen] == [
            f"{BASE_URL}/contacts/phone/%2B31612345678?channel_uuid=c1",
            f"{MESSAGES_URL}?page=1",
            f"{MESSAGES_URL}?page=2",
        ]
        assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in seen)

    def test_async_unknown_number_is_none_and_errors_are_typed(self, callbell_conn, async_answers):
        import httpx

        answers, _ = async_answers
        answers.append(httpx.Response(404, json={"error": "Contact not found"}))
        answers.append(httpx.Response(503, text="down"))
        hook = CallbellHook()
        assert asyncio.run(hook.aget_contact_by_phone("+31612345678")) is None

        async def read() -> list[dict[str, Any]]:
            return [m async for m in hook.alist_contact_messages(CONTACT_UUID)]

        with pytest.raises(CallbellAPIError) as caught:
            asyncio.run(read())
        assert caught.value.status_code == 503
        assert caught.value.is_transient


class TestAgainstSandbox:
    def test_reads_a_conversation_from_the_sandbox(self, callbell_sandbox):
        callbell_sandbox.messages_page_size = 2
        hook = CallbellHook()
        question = hook.send_message("+31612345678", content={"text": "Publish? YES/NO"})["uuid"]
        callbell_sandbox.receive("+31612345678", "maybe")
        callbell_sandbox.receive("+31612345678", "yes")
        contact = hook.get_contact_by_phone("+31 6 1234 5678")
        assert contact is not None
        assert hook.get_contact(contact["uuid"]) == contact
        before = len(callbell_sandbox.requests)
        messages = list(hook.list_contact_messages(contact["uuid"], stop_at_uuid=question))
        assert [(m["status"], m["text"]) for m in messages] == [
            ("received", "yes"),
            ("received", "maybe"),
            ("sent", "Publish? YES/NO"),
        ]
        assert len(callbell_sandbox.requests) - before == 2  # two pages of two
        assert hook.get_contact_by_phone("+31600000000") is None
