"""Property-based: any input either passes validation or raises CallbellValidationError naming a field,
and no request ever leaves for an invalid message."""

from __future__ import annotations

import json
import os
import re

import requests_mock
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.validation import CHANNEL_TYPES, MESSAGE_TYPES, build_send_payload
from tests.conftest import SEND_URL, TOKEN, UUID

FIELD_AT_START = re.compile(
    r"^(to or bsuid|to|bsuid|from|type|content(\.\w+)?|channel_uuid|template_uuid|optin_contact|"
    r"template_values|assigned_user|team_uuid|fields|bot_status|metadata( key|\[.*\])?) "
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.text(max_size=5), max_size=3),
)
phone = st.from_regex(r"\+?[0-9 ()\-]{4,20}", fullmatch=True)
url = st.one_of(
    st.just("https://example.com/a.png"),
    st.from_regex(r"(https?|ftp)://[a-z]{0,8}(\.[a-z]{2,3})?/?\w*", fullmatch=True),
    st.text(max_size=20),
)
content = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "text": st.one_of(st.text(max_size=40), anything),
            "url": url,
            "caption": st.text(max_size=5),
        },
    ),
    st.builds(
        json.dumps, st.dictionaries(st.sampled_from(["text", "url", "x"]), st.text(max_size=10), max_size=2)
    ),
    anything,
)
metadata = st.one_of(
    st.dictionaries(st.text(max_size=60), st.one_of(st.text(max_size=600), st.integers()), max_size=12),
    st.text(max_size=20),
    st.none(),
)
message = st.fixed_dictionaries(
    {
        "to": st.one_of(phone, st.text(max_size=20), st.none(), anything),
        "type": st.one_of(st.sampled_from(MESSAGE_TYPES), st.text(max_size=8)),
        "content": content,
    },
    optional={
        "from_": st.one_of(st.sampled_from(CHANNEL_TYPES), st.text(max_size=8)),
        "bsuid": st.one_of(st.text(max_size=10), anything),
        "channel_uuid": anything,
        "template_uuid": st.one_of(st.text(max_size=10), anything),
        "optin_contact": st.one_of(st.booleans(), anything),
        "template_values": st.one_of(
            st.lists(st.text(max_size=5), max_size=3), anything, st.text(max_size=10)
        ),
        "assigned_user": st.one_of(st.emails(), anything),
        "team_uuid": anything,
        "fields": st.one_of(
            st.sampled_from(["contact", "conversation", "contact,conversation", "x"]), anything
        ),
        "bot_status": st.one_of(st.sampled_from(["bot_start", "bot_end"]), anything),
        "metadata": metadata,
    },
)


@settings(max_examples=400, deadline=None)
@given(message)
def test_valid_or_error_naming_a_field(kwargs):
    try:
        payload = build_send_payload(**kwargs)
    except CallbellValidationError as err:
        error = str(err)
    else:
        error = ""
    event("invalid" if error else "valid")
    if error:
        assert FIELD_AT_START.match(error), error
        return
    assert None not in json.loads(json.dumps(payload)).values()  # serialisable, and no nulls sent
    assert payload["type"] in MESSAGE_TYPES
    assert payload["from"] in CHANNEL_TYPES
    assert "to" in payload or "bsuid" in payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message)
def test_no_request_for_an_invalid_message(monkeypatch, kwargs):
    monkeypatch.setitem(
        os.environ, "AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps({"conn_type": "callbell", "password": TOKEN})
    )
    with requests_mock.Mocker() as mocker:
        mocker.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        try:
            expected = build_send_payload(**{"from_": "whatsapp", **kwargs})
        except CallbellValidationError:
            expected = None
        try:
            CallbellHook().send_message(**kwargs)
        except CallbellValidationError:
            assert expected is None
            assert mocker.call_count == 0
        else:
            assert mocker.call_count == 1
            assert mocker.last_request.json() == expected
