"""Reading a paged listing: which page to ask for next, and when to stop, decided once for both paths.

Callbell pages its listings with ``?page=N`` and answers ``{"<key>": [...], "meta": {"pages": M}}``.
A :class:`Pager` does no I/O: the caller asks it for the next request's parameters, sends the request
its own way (the sync send from a worker, the async send from a trigger) and hands it the decoded
answer, which the pager checks and turns into the items to yield. So the stop rules live here once,
as slack_sdk keeps them in its ``SlackResponse`` iteration, and the sync and async readers only loop:

.. code-block:: python

    pager = Pager("GET /templates", "templates", invalid=...)
    while (params := pager.next_params()) is not None:
        yield from pager.read(send("GET", "/templates", params=params))

Reading stops at the last page (``meta.pages``), at an empty page, or where a :class:`MessagesCut`
says (a conversation read down to a message, a time, or a number of pages). It fails with
:class:`~airflow_provider_callbell.exceptions.CallbellInvalidResponseError` on an answer of the wrong
shape, on a page that repeats the one before (a server ignoring ``page``), and past
:data:`MAX_PAGES` pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.exceptions import CallbellInvalidResponseError, CallbellValidationError
from airflow_provider_callbell.replies import parse_created_at
from airflow_provider_callbell.validation import validate_uuid

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_callbell.answers import InvalidError

#: The most pages a listing reads; Callbell's accounts have a handful, and no conversation has this many.
MAX_PAGES = 1000


@dataclass(frozen=True)
class MessagesCut:
    """Where a read of a conversation (newest first) stops, before its last page.

    :param stop_at_uuid: the message whose uuid this is is the last one read.
    :param since: messages created before this (whole seconds, like Callbell's ``createdAt``) are not
        read; nor, fail-closed, is a message whose ``createdAt`` is missing or cannot be read (the read
        goes on past it: a later one may be newer).
    :param max_pages: read at most this many pages.
    """

    stop_at_uuid: str | None = None
    since: datetime | None = None
    max_pages: int | None = None

    @classmethod
    def checked(cls, stop_at_uuid: str | None, since: datetime | None, max_pages: int | None) -> MessagesCut:
        """The cut of a caller's arguments; :class:`CallbellValidationError` for a bad one."""
        if stop_at_uuid is not None:
            validate_uuid("stop_at_uuid", stop_at_uuid)
        if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
            raise CallbellValidationError(f"since must be a timezone-aware datetime, got {since!r}")
        if max_pages is not None and (
            isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1
        ):
            raise CallbellValidationError(f"max_pages must be a whole number >= 1, got {max_pages!r}")
        floor = None if since is None else since.astimezone(timezone.utc).replace(microsecond=0)
        return cls(stop_at_uuid, floor, max_pages)

    def keep(self, batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """The messages of one page to yield, and whether the cut fell inside it."""
        kept: list[dict[str, Any]] = []
        for message in batch:
            if self.since is not None:
                created = parse_created_at(message.get("createdAt"))
                if created is not None and created < self.since:
                    return kept, True
                is_stop = self.stop_at_uuid is not None and message.get("uuid") == self.stop_at_uuid
                if created is None and not is_stop:
                    continue  # a time that cannot be read is never "since": skipped, not trusted
            kept.append(message)
            if self.stop_at_uuid is not None and message.get("uuid") == self.stop_at_uuid:
                return kept, True
        return kept, False


class Pager:
    """The state of one paged read: the page asked for last, the page before, and whether it is over.

    :param endpoint: ``"GET <path>"``, for errors.
    :param key: the answer's member holding the page's items, e.g. ``"templates"``.
    :param invalid: builds the error for an answer of the wrong shape (it redacts the excerpt).
    :param params: the request's other query parameters.
    :param cut: where a conversation's read stops early. With a cut, an answer without
        ``meta.pages`` is read on until an empty page (Callbell's older conversation answers have no
        ``meta``); without one, such an answer is the only page.
    :param what: what has no more than :data:`MAX_PAGES` pages, for the error past them.
    """

    def __init__(
        self,
        endpoint: str,
        key: str,
        *,
        invalid: InvalidError,
        params: Mapping[str, Any] | None = None,
        cut: MessagesCut | None = None,
        what: str = "Callbell account",
    ) -> None:
        self.endpoint = endpoint
        self.key = key
        self._invalid = invalid
        self._params = dict(params or {})
        self._cut = cut
        self._what = what
        self.page = 0
        self.done = False
        self._previous: list[Any] | None = None

    def next_params(self) -> dict[str, Any] | None:
        """The query parameters of the next page to ask for, or ``None`` when the read is over."""
        if self.done:
            return None
        if self.page >= MAX_PAGES:
            raise CallbellInvalidResponseError(
                f"more than {MAX_PAGES} pages of {self.key!r}; no {self._what} has that many",
                endpoint=self.endpoint,
            )
        self.page += 1
        return {**self._params, "page": self.page}

    def read(self, data: Any) -> list[dict[str, Any]]:
        """Check one decoded answer and return its items to yield; after the last page, ``done``."""
        batch = data.get(self.key) if isinstance(data, dict) else None
        if not isinstance(batch, list) or not all(isinstance(item, dict) for item in batch):
            raise self._invalid(f"expected a JSON object with a list {self.key!r}", self.endpoint, data)
        if batch and batch == self._previous:
            raise self._invalid(
                f"page {self.page} repeats page {self.page - 1}; the listing never ends", self.endpoint, data
            )
        self._previous = batch
        meta = data.get("meta")
        pages = meta.get("pages") if isinstance(meta, dict) else None
        if self._cut is None:
            # A listing without meta.pages (or with a non-number) is one page.
            self.done = not batch or not isinstance(pages, int) or self.page >= pages
            return batch
        kept, cut_inside = self._cut.keep(batch)
        self.done = (
            cut_inside
            or not batch
            or (isinstance(pages, int) and self.page >= pages)
            or (self._cut.max_pages is not None and self.page >= self._cut.max_pages)
        )
        return kept
