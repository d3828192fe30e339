"""The shapes of Callbell's answers the provider relies on, checked once an answer is decoded.

The transport turns an answer into JSON or a typed error; what the JSON must hold is checked here,
per endpoint: a sent message with its uuid, a status among Callbell's, a contact with its uuid. An
answer of another shape is refused with the error ``invalid`` builds (the hook's, which keeps a
redacted excerpt of the answer), so that a caller never reads a missing field later.

A value the provider reuses (a uuid goes into a URL, a log line, XCom and trigger events; a status
into a log line and a decision) is checked here too: a server that echoes the request's
``Authorization`` header, or puts a newline and terminal escapes in a uuid, gets a
:class:`~airflow_provider_callbell.exceptions.CallbellInvalidResponseError` (the answer is at fault),
never a ``CallbellValidationError`` later, when the value reaches a check made for the caller's input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.message_status import MESSAGE_STATUSES
from airflow_provider_callbell.validation import is_uuid

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_callbell.exceptions import CallbellInvalidResponseError

    #: Builds the error for an answer of the wrong shape: (reason, endpoint, the decoded answer).
    InvalidError = Callable[[str, str, Any], CallbellInvalidResponseError]


def sent_message(data: Any, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    """The ``message`` of a send's answer, which must hold the new message's uuid."""
    message = _object(data, "message", endpoint, invalid)
    if "uuid" not in message:
        raise invalid("the answer's message has no 'uuid'", endpoint, message)
    _check_uuid(message, "the answer's message", endpoint, invalid)
    if "status" in message and message["status"] not in MESSAGE_STATUSES:
        raise invalid(
            f"the answer's message has an unknown status ({', '.join(MESSAGE_STATUSES)})", endpoint, message
        )
    return message


def status_message(data: Any, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    """The ``message`` of a status answer, which must hold one of Callbell's statuses."""
    message = _object(data, "message", endpoint, invalid)
    if message.get("status") not in MESSAGE_STATUSES:
        raise invalid(f"expected a message with a status ({', '.join(MESSAGE_STATUSES)})", endpoint, message)
    if "uuid" in message:  # shown in the error of a failed message
        _check_uuid(message, "the answer's message", endpoint, invalid)
    return message


def contact(data: Any, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    """The ``contact`` of an answer; ``GET /contacts/:uuid``'s documented example wraps it in a list."""
    value = data.get("contact") if isinstance(data, dict) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict) or "uuid" not in value:
        raise invalid("expected a JSON object with a 'contact' holding a uuid", endpoint, data)
    _check_uuid(value, "the answer's contact", endpoint, invalid)
    return value


def _check_uuid(obj: dict[str, Any], what: str, endpoint: str, invalid: InvalidError) -> None:
    """Refuse an object whose ``uuid`` is not one: it would go into a URL, a log line and XCom."""
    if not is_uuid(obj["uuid"]):
        raise invalid(f"{what} has a 'uuid' that is not a Callbell uuid (32 hex digits)", endpoint, obj)


def _object(data: Any, key: str, endpoint: str, invalid: InvalidError) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise invalid(f"expected a JSON object with {key!r}", endpoint, data)
    return value
