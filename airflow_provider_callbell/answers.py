"""The shapes of Callbell's answers the provider relies on, checked once an answer is decoded.

The transport turns an answer into JSON or a typed error; what the JSON must hold is checked here,
per endpoint: a sent message with its uuid, a status among Callbell's, a contact with its uuid. An
answer of another shape is refused with the error ``invalid`` builds (the hook's, which keeps a
redacted excerpt of the answer), so that a caller never reads a missing field later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.message_status import MESSAGE_STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_callbell.exceptions import CallbellInvalidResponseError

    #: Builds the error for an answer of the wrong shape: (reason, endpoint, the decoded answer).
    InvalidError = Callable[[str, str, Any], CallbellInvalidResponseError]


def sent_message(data: Any, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    """The ``message`` of a send's answer, which must hold the new message's uuid."""
    message = _object(data, "message", endpoint, invalid)
    if not isinstance(message.get("uuid"), str):
        raise invalid("the answer's message has no 'uuid'", endpoint, message)
    return message


def status_message(data: Any, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    """The ``message`` of a status answer, which must hold one of Callbell's statuses."""
    message = _object(data, "message", endpoint, invalid)
    if message.get("status") not in MESSAGE_STATUSES:
        raise invalid(f"expected a message with a status ({', '.join(MESSAGE_STATUSES)})", endpoint, message)
    return message


def contact(data: Any, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    """The ``contact`` of an answer; ``GET /contacts/:uuid``'s documented example wraps it in a list."""
    value = data.get("contact") if isinstance(data, dict) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict) or not isinstance(value.get("uuid"), str):
        raise invalid("expected a JSON object with a 'contact' holding a uuid", endpoint, data)
    return value


def _object(data: Any, key: str, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise invalid(f"expected a JSON object with {key!r}", endpoint, data)
    return value
