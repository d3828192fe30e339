"""The sandbox's web inbox: what a DAG sent, shown as the recipient's phone would show it.

Why it exists: the JSON under ``/_sandbox/messages`` answers a test, not a person. A data engineer
trying a notifier, a template or a bulk campaign wants to look at the messages (as Mailpit does for
e-mail), watch their statuses move and answer as the customer. ``GET /`` serves one self-contained
page (``inbox.html``, no CDN, font or script from elsewhere) and the page polls the small JSON routes
below; every value reaches the page as JSON and is put into the DOM as text, never as HTML.

The views read the sandbox's message store under its lock without copying it, so a poll stays cheap
with 10,000 messages: only the newest page of one conversation, and what changed since the last
poll, go over the wire.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airflow_provider_callbell.sandbox.server import _Answer, _error, status_at

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_callbell.sandbox.server import CallbellSandbox, _Message

JSON = dict[str, Any]

PAGE_SIZE = 50  # messages per page in the chat pane; older pages load on scroll
MAX_CONVERSATIONS = 200  # the sidebar lists the most recently active ones
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")

# The page's only script and style carry a fresh nonce; nothing else may run, load fonts or connect
# anywhere but back here. Images may come from anywhere, because media URLs are the user's own.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src http: https: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _template() -> str:
    return resources.files(__package__).joinpath("inbox.html").read_text(encoding="utf-8")


def page() -> tuple[bytes, dict[str, str]]:
    """The inbox page and its headers, with a per-response nonce for its inline script and style."""
    nonce = secrets.token_urlsafe(16)
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY.format(nonce=nonce),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return _template().replace("{{nonce}}", nonce).encode(), headers


def conversation_id(message: _Message) -> str:
    """One conversation per recipient (the phone number, or the bsuid when there is no number)."""
    body = message.body
    return str(body["to"] if body.get("to") is not None else body["bsuid"])


def _filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or url


def _bubble(sandbox: CallbellSandbox, message: _Message, now: float, interval: float) -> JSON:
    """What the page needs to draw one message; plain values only, the page escapes them all."""
    body = message.body
    content = body.get("content") or {}
    status, payload = status_at(message, now, interval)
    bubble: JSON = {
        "uuid": message.uuid,
        "direction": "out",
        "channel": body["from"],
        "type": body["type"],
        "at": message.received_at,
        "text": content.get("text"),
        "url": content.get("url"),
        "filename": _filename(content["url"]) if isinstance(content.get("url"), str) else None,
        "metadata": body.get("metadata") or {},
        "status": status,
        "reason": payload.get("reason"),
        "template": None,
    }
    template_uuid = body.get("template_uuid")
    if template_uuid is not None:
        values = list(body.get("template_values") or ([content["text"]] if content.get("text") else []))
        known = next((t for t in sandbox.templates if t.get("uuid") == template_uuid), None)
        rendered = None
        if known is not None and isinstance(known.get("text"), str):
            rendered = _PLACEHOLDER.sub(
                lambda m: values[int(m[1]) - 1] if 0 < int(m[1]) <= len(values) else m[0], known["text"]
            )
        bubble["template"] = {
            "uuid": template_uuid,
            "title": known.get("title") if known else None,
            "values": values,
            "text": rendered,
        }
    return bubble


def _live(sandbox: CallbellSandbox) -> Iterable[_Message]:
    return (message for message in sandbox._messages.values() if not message.deleted)


def conversations(sandbox: CallbellSandbox) -> JSON:
    """The sidebar: one entry per recipient, newest activity first, with its message count."""
    summaries: dict[str, JSON] = {}
    with sandbox._lock:
        for message in _live(sandbox):  # arrival order, so the last one seen is the newest
            key = conversation_id(message)
            entry = summaries.get(key)
            if entry is None:
                entry = summaries[key] = {"id": key, "contact": key, "count": 0}
            entry["count"] += 1
            entry["channel"] = message.body["from"]
            entry["last_at"] = message.received_at
            content = message.body.get("content") or {}
            entry["last_text"] = str(content.get("text") or _filename(str(content.get("url") or "")))[:80]
    ordered = sorted(summaries.values(), key=lambda entry: entry["last_at"], reverse=True)
    return {
        "conversations": ordered[:MAX_CONVERSATIONS],
        "total": len(ordered),
        "messages": sum(entry["count"] for entry in ordered),
    }


def messages(
    sandbox: CallbellSandbox, conversation: str, now: float, before: str | None = None, limit: int = PAGE_SIZE
) -> JSON:
    """One page of a conversation, oldest first: the newest ``limit``, or those before ``before``."""
    interval = sandbox._knobs.status_interval
    with sandbox._lock:
        thread = [message for message in _live(sandbox) if conversation_id(message) == conversation]
        end = len(thread)
        if before is not None:
            end = next((i for i, message in enumerate(thread) if message.uuid == before), 0)
        start = max(0, end - limit)
        page = [_bubble(sandbox, message, now, interval) for message in thread[start:end]]
    return {"messages": page, "more": start > 0}


def changes(sandbox: CallbellSandbox, conversation: str | None, since: float, now: float) -> JSON:
    """What the open conversation gained or which statuses moved between ``since`` and ``now``.

    Statuses are a function of time, so "moved" is exact: the status at ``since`` differs from the one
    at ``now``. More than a page of news (a bulk send) answers ``reload`` instead, and the page
    reloads its newest page rather than appending thousands of bubbles.
    """
    answer = conversations(sandbox)
    changed: list[JSON] = []
    reload = False
    if conversation is not None:
        interval = sandbox._knobs.status_interval
        with sandbox._lock:
            for message in _live(sandbox):
                if conversation_id(message) != conversation:
                    continue
                if message.received_at <= since and status_at(message, since, interval) == status_at(
                    message, now, interval
                ):
                    continue
                if len(changed) == PAGE_SIZE:
                    reload = True
                    break
                changed.append(_bubble(sandbox, message, now, interval))
    answer.update(changed=changed, reload=reload, now=now)
    return answer


def knobs(sandbox: CallbellSandbox) -> JSON:
    """The fault knobs the page's form edits, as they are now."""
    current = sandbox._knobs
    return {
        "latency": current.latency,
        "error_rate": current.error_rate,
        "drop_rate": current.drop_rate,
        "rate_limit": current.rate_limit,
        "status_interval": current.status_interval,
    }


def configure(sandbox: CallbellSandbox, wanted: Any) -> JSON:
    """Apply the form's values; raises ``ValueError`` naming the field for a bad one."""
    if not isinstance(wanted, dict):
        raise ValueError("body: must be a JSON object")
    update: JSON = {}
    for name in ("latency", "error_rate", "drop_rate", "status_interval"):
        if name in wanted:
            value = wanted[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: must be a number, got {value!r}")
            update[name] = float(value)
    if "rate_limit" in wanted:
        value = wanted["rate_limit"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(
                f"rate_limit: must be a whole number of requests per second or null, got {value!r}"
            )
        update["rate_limit"] = value or None  # 0 turns it off, as on the command line
    unknown = set(wanted) - set(update)
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: not a knob; expected one of {', '.join(knobs(sandbox))}")
    try:
        sandbox.configure(**update)
    except ValueError as exc:
        raise ValueError(f"knobs: {exc}") from None
    return knobs(sandbox)


def route(
    sandbox: CallbellSandbox, method: str, path: str, query: dict[str, list[str]], raw: bytes
) -> _Answer:
    """Answer the inbox's routes: the page, its JSON views and the knobs; no auth and no faults."""
    now = time.time()
    one = {name: values[-1] for name, values in query.items()}
    match method, path:
        case "GET", "/":
            body, headers = page()
            return _Answer(200, body, headers)
        case "GET", "/_sandbox/inbox/conversations":
            return _Answer(200, conversations(sandbox))
        case "GET", "/_sandbox/inbox/messages":
            if "conversation" not in one:
                return _error(400, "conversation", "is required")
            return _Answer(200, messages(sandbox, one["conversation"], now, one.get("before")))
        case "GET", "/_sandbox/inbox/changes":
            try:
                since = float(one.get("since", "0"))
            except ValueError:
                return _error(400, "since", "must be a number (the 'now' of the previous answer)")
            return _Answer(200, changes(sandbox, one.get("conversation"), since, now))
        case "GET", "/_sandbox/knobs":
            return _Answer(200, knobs(sandbox))
        case "POST", "/_sandbox/knobs":
            try:
                wanted = json.loads(raw or b"null")
            except ValueError:
                return _error(400, "body", "must be a JSON object")
            try:
                return _Answer(200, configure(sandbox, wanted))
            except ValueError as exc:
                field, _, message = str(exc).partition(": ")
                return _error(400, field, message)
    return _Answer(404, {"error": "Not Found"})
