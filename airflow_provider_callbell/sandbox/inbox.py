"""The sandbox's web inbox: what a DAG sent, shown as the recipient's phone would show it.

Why it exists: the JSON under ``/_sandbox/messages`` answers a test, not a person. A data engineer
trying a notifier, a template or a bulk campaign wants to look at the messages (as Mailpit does for
e-mail), watch their statuses move and answer as the customer. ``GET /`` serves one self-contained
page (``inbox.html``, no CDN, font or script from elsewhere) and the page polls the small JSON routes
below; every value reaches the page as JSON and is put into the DOM as text, never as HTML.

The views read the sandbox's :class:`~airflow_provider_callbell.sandbox.store.Store` through its read
API (shallow snapshots, never its lock or its dicts), so a poll stays cheap with 10,000 messages: only
the newest page of one conversation, and what changed since the last poll, go over the wire. Texts
go with their WhatsApp formatting already parsed (:mod:`~airflow_provider_callbell.sandbox.formatting`)
as plain pieces. The inbox builds on the store alone; it knows nothing of the Callbell routes or of the
HTTP server.
"""

from __future__ import annotations

import json
import secrets
import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airflow_provider_callbell.sandbox.answers import Answer, error, not_found
from airflow_provider_callbell.sandbox.formatting import formatted
from airflow_provider_callbell.sandbox.store import (
    STATUS_STEPS,
    Message,
    Received,
    sent_text,
    status_at,
    template_named,
)

if TYPE_CHECKING:
    from airflow_provider_callbell.sandbox.rules import JSON
    from airflow_provider_callbell.sandbox.store import Account, Conversation, Entry, Store

PAGE_SIZE = 50  # messages per page in the chat pane; older pages load on scroll
MAX_CONVERSATIONS = 200  # the sidebar lists the most recently active ones

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


def _filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or url


def _shown(entry: Entry) -> bool:
    return isinstance(entry, Received) or not entry.deleted


def _preview(entry: Entry) -> str:
    if isinstance(entry, Received):
        return entry.text[:80]
    content = entry.body.get("content") or {}
    return str(content.get("text") or _filename(str(content.get("url") or "")))[:80]


class Inbox:
    """The inbox's routes and JSON views over one sandbox's store.

    :param store: what the sandbox holds; read through its snapshots, the knobs changed through it.
    :param account: read for its templates, live, to show a template message as the customer reads it.
    """

    def __init__(self, store: Store, account: Account) -> None:
        self._store = store
        self._account = account

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Answer:
        """Answer the inbox's routes: the page, its JSON views and the knobs; no auth and no faults."""
        now = time.time()
        one = {name: values[-1] for name, values in query.items()}
        match method, path:
            case "GET", "/":
                body, headers = page()
                return Answer(200, body, headers)
            case "GET", "/_sandbox/inbox/conversations":
                return Answer(200, self.conversations())
            case "GET", "/_sandbox/inbox/messages":
                if "conversation" not in one:
                    return error(400, "conversation", "is required (a contact uuid)")
                before = one.get("before")
                if before is not None and not before.isdigit():
                    return error(400, "before", "must be the key of the oldest message shown")
                return Answer(
                    200, self.messages(one["conversation"], now, None if before is None else int(before))
                )
            case "GET", "/_sandbox/inbox/changes":
                try:
                    since = float(one.get("since", "0"))
                except ValueError:
                    return error(400, "since", "must be a number (the 'now' of the previous answer)")
                return Answer(200, self.changes(one.get("conversation"), since, now))
            case "GET", "/_sandbox/knobs":
                return Answer(200, self.knobs())
            case "POST", "/_sandbox/knobs":
                try:
                    wanted = json.loads(raw or b"null")
                except ValueError:
                    return error(400, "body", "must be a JSON object")
                try:
                    return Answer(200, self.configure(wanted))
                except ValueError as exc:
                    field, _, message = str(exc).partition(": ")
                    return error(400, field, message)
        return not_found()

    def conversations(self) -> JSON:
        """The sidebar: one entry per contact, newest activity first, with its message count."""
        summaries: list[JSON] = []
        for conversation in self._store.conversations():
            contact = conversation.contact
            shown = [entry for entry in conversation.entries if _shown(entry)]
            if not shown:
                continue
            summaries.append(
                {
                    "id": contact.uuid,
                    "contact": contact.phone_number or contact.bsuid or contact.address,
                    "channel": contact.channel,
                    "count": len(shown),
                    "last_at": shown[-1].received_at,
                    "last_text": _preview(shown[-1]),
                }
            )
        summaries.sort(key=lambda entry: entry["last_at"], reverse=True)
        return {
            "conversations": summaries[:MAX_CONVERSATIONS],
            "total": len(summaries),
            "messages": sum(entry["count"] for entry in summaries),
        }

    def messages(
        self, contact_uuid: str, now: float, before: int | None = None, limit: int = PAGE_SIZE
    ) -> JSON:
        """One page of a conversation, oldest first: the newest ``limit`` entries, or those before the
        entry keyed ``before``.
        """
        interval = self._store.knobs.status_interval
        conversation = self._store.conversation(contact_uuid)
        entries = conversation.entries if conversation is not None else ()
        index = len(entries)
        if before is not None:
            index = min(index, max(0, before))
        page: list[JSON] = []
        while conversation is not None and index > 0 and len(page) < limit:
            index -= 1
            if _shown(entries[index]):
                page.append(self._bubble(conversation, index, now, interval))
        page.reverse()
        return {"messages": page, "more": index > 0}

    def changes(self, contact_uuid: str | None, since: float, now: float) -> JSON:
        """The sidebar, and what the open conversation gained or which statuses moved since ``since``.

        Statuses are a function of time, so "moved" is exact: the status at ``since`` differs from the
        one at ``now``; the scan walks back only as far as a status could still have moved. More than a
        page of news (a bulk send) answers ``reload``, and the page reloads its newest page instead.
        """
        answer = self.conversations()
        answer["now"] = now
        changed: list[JSON] = []
        interval = self._store.knobs.status_interval
        settled = since - len(STATUS_STEPS) * interval - 1.0  # older entries had their last status by then
        conversation = self._store.conversation(contact_uuid) if contact_uuid is not None else None
        if conversation is None:
            return {**answer, "changed": [], "reload": False}
        for index in range(len(conversation.entries) - 1, -1, -1):
            entry = conversation.entries[index]
            if entry.received_at < settled or len(changed) > PAGE_SIZE:
                break
            if _shown(entry) and (
                entry.received_at > since
                or (
                    isinstance(entry, Message)
                    and status_at(entry, since, interval) != status_at(entry, now, interval)
                )
            ):
                changed.append(self._bubble(conversation, index, now, interval))
        changed.reverse()
        answer.update(changed=changed[-PAGE_SIZE:], reload=len(changed) > PAGE_SIZE)
        return answer

    def knobs(self) -> JSON:
        """The fault knobs the page's form edits, as they are now."""
        current = self._store.knobs
        return {
            "latency": current.latency,
            "error_rate": current.error_rate,
            "drop_rate": current.drop_rate,
            "rate_limit": current.rate_limit,
            "status_interval": current.status_interval,
        }

    def configure(self, wanted: Any) -> JSON:
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
            raise ValueError(f"{sorted(unknown)[0]}: not a knob; expected one of {', '.join(self.knobs())}")
        try:
            self._store.configure(**update)
        except ValueError as exc:
            raise ValueError(f"knobs: {exc}") from None
        return self.knobs()

    def _bubble(self, conversation: Conversation, index: int, now: float, interval: float) -> JSON:
        """What the page needs to draw one entry of a conversation; plain values only, the page
        escapes them all. The entry's index is its key: entries are only appended (a reset forgets
        whole conversations).
        """
        contact = conversation.contact
        entry, key = conversation.entries[index], str(index)
        if isinstance(entry, Received):  # the customer's answer: text only, no uuid, no ticks
            return {
                "key": key,
                "channel": contact.channel,
                "uuid": None,
                "direction": "in",
                "type": "text",
                "text": entry.text,
                "rich": formatted(entry.text),
                "at": entry.received_at,
                "status": "received",
                "metadata": {},
                "template": None,
            }
        body = entry.body
        content = body.get("content") or {}
        status, payload = status_at(entry, now, interval)
        url = content.get("url")
        text = content.get("text")
        bubble: JSON = {
            "key": key,
            "uuid": entry.uuid,
            "channel": contact.channel,
            "direction": "out",
            "type": body["type"],
            "at": entry.received_at,
            "text": text,
            "rich": formatted(text) if isinstance(text, str) else None,
            "url": url,
            "filename": _filename(url) if isinstance(url, str) else None,
            "metadata": body.get("metadata") or {},
            "status": status,
            "reason": payload.get("reason"),
            "template": None,
        }
        template_uuid = body.get("template_uuid")
        if template_uuid is not None:
            templates = self._account.templates
            known = template_named(templates, template_uuid)
            read = sent_text(body, templates) if known else None  # the text as the customer reads it
            bubble["template"] = {
                "uuid": template_uuid,
                "title": known.get("title") if known else None,
                "values": list(
                    body.get("template_values") or ([content["text"]] if content.get("text") else [])
                ),
                "text": read,
                "rich": formatted(read) if read else None,
            }
        return bubble
