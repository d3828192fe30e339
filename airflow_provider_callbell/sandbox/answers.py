"""What a route of the sandbox answers, as plain values the HTTP layer writes.

Why a module of its own: the Callbell routes (:mod:`~airflow_provider_callbell.sandbox.api`), the web
inbox and the server's own routes all answer the same way, and none of them should import another to
do so. Keeping the answer type here, below all three, is what lets them stay independent.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_callbell.sandbox.rules import JSON


@dataclasses.dataclass(frozen=True)
class Answer:
    """One HTTP answer: a status, a body and extra headers.

    A JSON body is sent as ``application/json``; bytes are sent as they are, with the Content-Type
    given in ``headers``; ``None`` sends no body.
    """

    status: int
    body: JSON | bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def error(status: int, field: str, message: str) -> Answer:
    """An answer that names the field at fault, as Callbell's validation errors do."""
    return Answer(status, {"error": {"field": field, "message": message}})


def not_found(what: str = "Not Found") -> Answer:
    """A ``404`` saying what was not found (by default, the route itself)."""
    return Answer(404, {"error": what})


def json_object(raw: bytes) -> JSON | None:
    """A request body that is a JSON object, else ``None`` (answered by :func:`not_a_json_object`)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def not_a_json_object() -> Answer:
    """The ``400`` for a body that :func:`json_object` refuses."""
    return Answer(400, {"error": "the request body must be a JSON object"})
