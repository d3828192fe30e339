"""Property-based: any value in any field of ``send_message`` and ``send_messages`` gives either a valid
body or ``CallbellValidationError`` naming the field, and no request ever leaves for an invalid message.

2,100 generated messages in all (1,200 + 600 + 300 sends of one to three messages), adversarial
values included: NaN and infinities, lone surrogates, non-string keys, deep nesting, megabyte strings,
hostile objects (see ``tests/adversarial.py``). ``CALLBELL_HYPOTHESIS_SCALE=10`` runs ten times more.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

import pytest
import requests_mock
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.validation import CHANNEL_TYPES, MESSAGE_TYPES, build_send_payload
from tests.adversarial import ADVERSARIAL
from tests.helpers import SEND_URL, TOKEN, UUID, assert_valid_body

if TYPE_CHECKING:
    from collections.abc import Iterator

SCALE = int(os.environ.get("CALLBELL_HYPOTHESIS_SCALE", "1"))
FIELD_AT_START = re.compile(
    r"^(to or bsuid|to|bsuid|from|type|content(\.\w+)?|channel_uuid|template_uuid|optin_contact|"
    r"template_values(\[\d+\])?|assigned_user|team_uuid|fields|bot_status|metadata( key|\[.*\])?|max_rps) "
)
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,  # the same run every time, and no .hypothesis folder in the worktree
    "derandomize": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
}

# By index: sampled_from would hash the values, and some refuse to be hashed.
adversarial = st.integers(0, len(ADVERSARIAL) - 1).map(lambda index: ADVERSARIAL[index][1])
any_text = st.text(st.characters(exclude_categories=()), max_size=30)  # surrogates included
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    any_text,
    st.binary(max_size=8),
)
anything = st.one_of(
    scalars,
    adversarial,
    st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.one_of(any_text, st.integers(), st.none()), inner, max_size=3)
            | st.sets(st.integers(), max_size=3)
        ),
        max_leaves=6,
    ),
)
phone = st.builds(
    str.__add__,
    st.sampled_from(["+", "+31 ", "+1 (", "00", "0", "", "+0"]),
    st.text("0123456789 -()٣", min_size=3, max_size=16),
)
url = st.one_of(
    st.sampled_from(
        ["https://example.com/a.png", "http://[::1", "ftp://example.com/a", "https://", "//x.y/z"]
    ),
    st.builds("{}://{}/{}".format, st.sampled_from(["http", "https", "file"]), any_text, any_text),
)
email = st.builds(
    "{}@{}.{}".format, st.text("ab.@ ", max_size=4), st.text("cd.", max_size=4), st.text("ef", max_size=3)
)
content = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "text": st.one_of(st.text(max_size=40), anything),
            "url": st.one_of(url, anything),
            "txt": any_text,
        },
    ),
    st.builds(
        json.dumps, st.dictionaries(st.sampled_from(["text", "url", "x"]), st.text(max_size=10), max_size=2)
    ),
    anything,
)
metadata = st.one_of(
    st.dictionaries(st.text(max_size=60), st.one_of(st.text(max_size=600), anything), max_size=12),
    st.builds(json.dumps, st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    anything,
)
fields = {
    "to": st.one_of(phone, any_text, anything),
    "type": st.one_of(st.sampled_from(MESSAGE_TYPES), any_text, anything),
    "content": content,
    "from_": st.one_of(st.sampled_from(CHANNEL_TYPES), any_text, anything),
    "bsuid": st.one_of(st.text(max_size=10), anything),
    "channel_uuid": anything,
    "template_uuid": st.one_of(st.text(max_size=10), anything),
    "optin_contact": st.one_of(st.booleans(), anything),
    "template_values": st.one_of(st.lists(st.text(max_size=5), max_size=3), anything),
    "assigned_user": st.one_of(email, anything),
    "team_uuid": anything,
    "fields": st.one_of(st.sampled_from(["contact", "conversation", "contact,conversation", "x"]), anything),
    "bot_status": st.one_of(st.sampled_from(["bot_start", "bot_end"]), anything),
    "metadata": metadata,
}
# Every field may be drawn; to and content usually are, so that valid messages come up too.
message = st.fixed_dictionaries(
    {"to": fields["to"], "content": fields["content"]},
    optional={name: strategy for name, strategy in fields.items() if name not in ("to", "content")},
)


@pytest.fixture(scope="module")
def hook() -> Iterator[tuple[CallbellHook, requests_mock.Mocker]]:
    """One hook and one mocked Callbell for every example: a send costs what it costs in a task."""
    with pytest.MonkeyPatch.context() as patch, requests_mock.Mocker() as mocker:
        patch.setenv(
            "AIRFLOW_CONN_CALLBELL_DEFAULT", json.dumps({"conn_type": "callbell", "password": TOKEN})
        )
        mocker.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})
        hook = CallbellHook()
        hook.session  # noqa: B018  # read the connection while the environment holds it
        yield hook, mocker


def expected_body(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The body ``build_send_payload`` makes, or None when it refuses, checking the error's form."""
    try:
        body = build_send_payload(**{"from_": "whatsapp", **kwargs})
    except CallbellValidationError as err:
        error = str(err)
        assert FIELD_AT_START.match(error), error
        assert len(error) < 600, error
        event("invalid")
        return None
    assert_valid_body(body)
    event("valid")
    return dict(body)


@settings(max_examples=1200 * SCALE, **SETTINGS)
@given(message)
def test_build_send_payload_gives_a_body_or_names_the_field(kwargs):
    body = expected_body(kwargs)
    if body is not None:
        assert body["type"] in MESSAGE_TYPES
        assert body["from"] in CHANNEL_TYPES
        assert "to" in body or "bsuid" in body


@settings(max_examples=600 * SCALE, **SETTINGS)
@given(kwargs=message)
def test_send_message_sends_only_valid_messages(hook, kwargs):
    callbell, mocker = hook
    before = mocker.call_count
    body = expected_body(kwargs)
    try:
        callbell.send_message(**kwargs)
    except CallbellValidationError:
        assert body is None
        assert mocker.call_count == before  # no request for an invalid message
    else:
        assert body is not None
        assert mocker.call_count == before + 1
        assert mocker.last_request.json() == body


def as_bulk(kwargs: dict[str, Any]) -> Any:
    """A message of a bulk send, as Python code (``from_``) or JSON data (``from``) spells it."""
    if "from_" in kwargs and type(kwargs.get("to")) is str and len(kwargs["to"]) % 2:
        kwargs = {**kwargs, "from": kwargs.pop("from_")}
    return kwargs


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(messages=st.lists(st.one_of(message.map(as_bulk), anything), min_size=1, max_size=3))
def test_send_messages_sends_nothing_when_one_is_invalid(hook, messages):
    callbell, mocker = hook
    before = mocker.call_count
    try:
        results = callbell.send_messages(messages, max_rps=10_000)
    except CallbellValidationError as err:
        error = str(err)
        assert re.match(r"^(\d+ of \d+ messages are invalid|messages must be)", error), error
        assert mocker.call_count == before  # not one request when any message is invalid
        event("refused")
    else:
        assert len(results) == len(messages)
        assert mocker.call_count == before + len(messages)
        assert all(result["uuid"] == UUID for result in results)
        event("sent")
