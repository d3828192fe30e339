"""Answering a Human-in-the-loop request from the phone: what a reply means, who may send it, when to submit.

The bridge (:class:`~airflow_provider_callbell.operators.hitl.CallbellHITLResponseOperator`) and its
trigger wait the same way; this module is that way, once:

- :class:`HITLRequestView` is Airflow's answer to ``GET .../hitlDetails``, checked;
- :class:`HITLAnswerRule` is a :class:`~airflow_provider_callbell.replies.ReplyRule` whose accepted
  answers are the request's options (by text, by number, yes/no for an approval, several when
  ``multiple``), so :class:`~airflow_provider_callbell.replies.ReplyScan` finds the answer and
  decides the one reprompt per wrong answer, exactly as for the reply sensor (with the same record of
  reprompts sent, kept per number);
- :func:`check_who_may_answer` keeps the phone from widening who may approve;
- :class:`HITLWait` is one poll (sync for poke mode, async for the trigger): the request, then the
  conversations, then the decision, including the pause that keeps a submission out of Airflow
  3.3.2's race (see :data:`DEFAULT_SETTLE_SECONDS`).

Nothing here sends a message or submits an answer: the operator does, from the worker.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from airflow_provider_callbell.exceptions import AirflowAPIError, CallbellValidationError
from airflow_provider_callbell.replies import (
    MAX_PAGES_PER_POLL,
    ReplyCheck,
    ReplyRule,
    ReplyScan,
    conversation_message,
    log_check,
    normalize_reply,
    parse_created_at,
)
from airflow_provider_callbell.validation import TEXT_MAX_CHARS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow_provider_callbell.hooks.airflow_api import AirflowAPIHook
    from airflow_provider_callbell.hooks.callbell import CallbellHook

#: A HITL task waits for its answer in these states: ``awaiting_input`` on Airflow 3.3+, ``deferred``
#: (to Airflow's HITL trigger) on 3.1 and 3.2.
WAITING_STATES = frozenset({"awaiting_input", "deferred"})
#: A HITL task in one of these states will not take an answer any more.
ENDED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
#: Submit only once the HITL task has been seen waiting this long. On Airflow 3.3.2 an answer that
#: arrives after the task parks in ``awaiting_input`` but before the scheduler has processed the
#: worker's exit (about one scheduler loop) makes the scheduler fail the task ("state changed
#: externally"); the notifier sends the question before the task parks, so a quick reply lands in
#: exactly that window.
DEFAULT_SETTLE_SECONDS = 10.0
#: Yes/no words for an approval (options Approve and Reject, as ``ApprovalOperator`` asks).
_APPROVE_WORDS = ("yes", "y", "ok", "approve", "approved")
_REJECT_WORDS = ("no", "n", "reject", "rejected")
#: Between several answers: a comma, a semicolon, "&", "+" or the word "and".
_SEPARATOR = re.compile(r"\s*(?:[,;&+]|\band\b)\s*")
#: How many options a reprompt lists before it says "…".
_MAX_LISTED = 20
#: A HITL question's "Respond in Airflow" link, as Airflow builds it (``HITLOperator.generate_link_to_ui``):
#: ``{base_url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/required_actions?...map_index=N``.
_REQUIRED_ACTIONS_LINK = re.compile(
    r"(?P<path>/dags/\S+?/tasks/[^/\s]+/required_actions)(?:\?(?P<query>\S*))?"
)


@dataclass(frozen=True)
class HITLRequestView:
    """What the bridge reads of ``GET .../hitlDetails``: the question, its state, and whether it is answered."""

    subject: str
    options: tuple[str, ...]
    multiple: bool
    assigned_user_ids: tuple[str, ...]
    created_at: datetime
    state: str | None
    answered: bool
    chosen_options: tuple[str, ...] = ()
    responded_by: str | None = None  # the Airflow user's name; None when defaults were applied
    params_input: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, detail: Mapping[str, Any]) -> HITLRequestView:
        """Check the answer's shape (it came from a server), naming the first field that is wrong."""

        def bad(name: str) -> AirflowAPIError:
            return AirflowAPIError(
                f"GET hitlDetails answered without a valid {name!r}",
                endpoint="GET /api/v2/dags/.../hitlDetails",
            )

        options = detail.get("options")
        if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
            raise bad("options")
        created = detail.get("created_at")
        try:
            created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            raise bad("created_at") from None
        if created_at.tzinfo is None:
            raise bad("created_at")
        users = detail.get("assigned_users") or []
        if not isinstance(users, list) or not all(
            isinstance(u, dict) and isinstance(u.get("id"), str) for u in users
        ):
            raise bad("assigned_users")
        ti = detail.get("task_instance")
        state = ti.get("state") if isinstance(ti, dict) else None
        responder = detail.get("responded_by_user")
        params = detail.get("params")
        params = params if isinstance(params, dict) else {}
        return cls(
            subject=str(detail.get("subject") or ""),
            options=tuple(options),
            multiple=bool(detail.get("multiple")),
            assigned_user_ids=tuple(u["id"] for u in users),
            created_at=created_at,
            state=state if isinstance(state, str) else None,
            answered=bool(detail.get("response_received")),
            chosen_options=tuple(str(o) for o in detail.get("chosen_options") or ()),
            responded_by=str(responder.get("name")) if isinstance(responder, dict) else None,
            # What the scheduler submits with defaults: each param's current value.
            params_input={
                key: value["value"] if isinstance(value, dict) and "value" in value else value
                for key, value in params.items()
            },
        )

    @property
    def is_approval(self) -> bool:
        return [normalize_reply(o) for o in self.options] == ["approve", "reject"]


@dataclass(frozen=True)
class HITLAnswerRule(ReplyRule):
    """A reply rule whose accepted answers are a HITL request's options.

    An answer is an option's text (case, surrounding punctuation and extra spaces ignored) or its
    number in the list (1 for the first); for an approval also yes/no (and y, ok, approved / n,
    rejected); with ``multiple`` several of those, separated by commas, "and", "&", "+" or ";"
    (numbers also by spaces: "1 3"). :meth:`match` returns the chosen options joined by ", "; the
    operator reads the list with :meth:`chosen`.
    """

    options: tuple[str, ...] = ()
    multiple: bool = False
    approval: bool = False

    @classmethod
    def for_request(cls, request: HITLRequestView) -> HITLAnswerRule:
        return cls(
            reprompt=reprompt_text(request),
            options=request.options,
            multiple=request.multiple,
            approval=request.is_approval,
        )

    def aliases(self) -> dict[str, str]:
        """Every accepted spelling (normalized) and the option it stands for; an option's text wins."""
        found: dict[str, str] = {}
        for number, option in enumerate(self.options, start=1):
            found.setdefault(str(number), option)
        if self.approval:
            approve, reject = self.options
            found.update(dict.fromkeys(_APPROVE_WORDS, approve) | dict.fromkeys(_REJECT_WORDS, reject))
        found.update({normalize_reply(option): option for option in self.options})
        return found

    def chosen(self, text: str | None) -> list[str] | None:
        """The options an answer chooses, in the request's order, or ``None`` if it is not an answer."""
        aliases = self.aliases()
        answer = normalize_reply(text or "")
        if answer in aliases:
            return [aliases[answer]]
        if not self.multiple or not answer:
            return None
        picked: set[str] = set()
        for part in _SEPARATOR.split(answer):
            part = normalize_reply(part)
            words = part.split()
            if part in aliases:
                picked.add(aliases[part])
            elif words and all(word.isdigit() and word in aliases for word in words):
                picked.update(aliases[word] for word in words)
            else:
                return None
        return [option for option in self.options if option in picked]

    def match(self, text: str | None) -> tuple[bool, str | None]:
        chosen = self.chosen(text)
        return chosen is not None, None if chosen is None else ", ".join(chosen)


def reprompt_text(request: HITLRequestView) -> str:
    """The one reprompt for a wrong answer: the options, numbered. The same text for every poll of a
    request, because the conversation itself tells which wrong answers were already reprompted."""
    listed = [f"{n} {option}" for n, option in enumerate(request.options[:_MAX_LISTED], start=1)]
    if len(request.options) > _MAX_LISTED:
        listed.append("…")
    how = "one or more of (e.g. 1, 3)" if request.multiple else "one of"
    extra = " (or yes / no)" if request.is_approval else ""
    subject = request.subject if len(request.subject) <= 200 else request.subject[:199] + "…"
    text = (
        f"Sorry, that is not an answer to “{subject}”. Please reply with {how}: {', '.join(listed)}{extra}."
    )
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"


def check_who_may_answer(
    numbers: Sequence[str], user_ids: Mapping[str, str], request: HITLRequestView, where: str
) -> None:
    """Refuse, before any wait, a phone that does not stand for one of the task's ``assigned_users``.

    The bridge answers as one Airflow user (the connection's), so Airflow's own check cannot tell
    who held the phone; this check keeps the phone from widening who may approve.
    """
    if not request.assigned_user_ids:
        return
    outside = [n for n in numbers if user_ids.get(n) not in request.assigned_user_ids]
    if outside:
        raise CallbellValidationError(
            f"{where}: {', '.join(outside)} may not answer: the HITL task's assigned_users are "
            f"{list(request.assigned_user_ids)}, and user_ids maps "
            + ", ".join(f"{n} to {user_ids[n]!r}" if n in user_ids else f"{n} to no user" for n in outside)
            + "; map each number in `to` to the Airflow user id of the person who holds that phone"
        )


@dataclass
class HITLWait:
    """One wait of the bridge: its place in the request's life, kept across polls and deferrals.

    :param numbers: the phone numbers whose replies count.
    :param user_ids: phone number -> Airflow user id, for :func:`check_who_may_answer`.
    :param where: how errors name the bridge task.
    :param settle_seconds: see :data:`DEFAULT_SETTLE_SECONDS`.
    :param contact_uuids: number -> its Callbell contact, once found.
    :param waiting_since: Unix time the HITL task was first seen waiting (``None``: not seen yet).
    :param reprompted: number -> how many of its wrong answers (oldest first) were reprompted: the
        bridge's own record, which holds while the conversation does not list the reprompt yet.
    :param connected: Callbell answered once in this wait (this poll or an earlier run's): a later
        failure to connect is an outage that passes, not a wrong base URL (see
        :mod:`~airflow_provider_callbell.connectivity`).
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    numbers: tuple[str, ...]
    user_ids: dict[str, str]
    where: str
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    channel_uuid: str | None = None
    contact_uuids: dict[str, str] = field(default_factory=dict)
    waiting_since: float | None = None
    reprompted: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    _logged: dict[str, ReplyCheck] = field(default_factory=dict, repr=False, compare=False)

    def state(self) -> dict[str, Any]:
        """What a trigger's kwargs and its events carry: plain JSON, ids, counts and times only."""
        return {
            "contact_uuids": dict(self.contact_uuids),
            "waiting_since": self.waiting_since,
            "reprompted": dict(self.reprompted),
        }

    def record_reprompt(self, number: str, wrong: int) -> None:
        """After sending ``number`` its reprompt: its first ``wrong`` wrong answers had theirs."""
        self.reprompted[number] = max(self.reprompted.get(number, 0), wrong)

    # -- One poll, in three steps; the I/O between them is sync (poke) or async (trigger) -----------

    def read_request(
        self, detail: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any] | None, HITLRequestView | None]:
        """Step 1: an event that ends the wait (answered elsewhere, task ended), or the request to go on with."""
        if detail is None:
            return None, None  # the HITL task has not asked yet
        request = HITLRequestView.parse(detail)
        if request.answered:
            return {
                "event": "answered",
                "chosen_options": list(request.chosen_options),
                "responded_by": request.responded_by,
            }, None
        if request.state in ENDED_STATES:
            return {"event": "ended", "state": request.state}, None
        check_who_may_answer(self.numbers, self.user_ids, request, self.where)
        if request.state in WAITING_STATES:
            self.waiting_since = self.waiting_since or self.clock()
        else:
            self.waiting_since = None
        return None, request

    def decide(
        self, request: HITLRequestView, checks: Mapping[str, ReplyCheck]
    ) -> tuple[dict[str, Any] | None, float]:
        """Step 2, once the conversations are read: the event, and how long to wait before it counts.

        An accepted reply (the earliest, over every number) is handed on once the HITL task has been
        waiting ``settle_seconds``; before that the second value says how much longer (the caller
        sleeps, reads the request again and calls :meth:`confirm`). Otherwise a reprompt event when
        a wrong answer awaits its one reprompt, or nothing.
        """
        replies = [(number, check.reply) for number, check in checks.items() if check.reply is not None]
        if replies:
            # Times compared as times: "12:00:09+02:00" is earlier than "11:00:05Z".
            number, reply = min(replies, key=lambda item: _reply_time(item[1]))
            chosen = HITLAnswerRule.for_request(request).chosen(reply.get("text"))
            event = {"event": "reply", "number": number, "reply": reply, "chosen_options": chosen}
            if self.waiting_since is None:
                return None, 0.0  # not parked yet: the next poll looks again
            return event, max(self.waiting_since + self.settle_seconds - self.clock(), 0.0)
        wrong = {number: check.wrong for number, check in checks.items() if check.needs_reprompt}
        if wrong:
            event = {
                "event": "reprompt",
                "numbers": list(wrong),
                "wrong": wrong,
                "text": reprompt_text(request),
            }
            return {**event, **self.state()}, 0.0
        return None, 0.0

    def confirm(self, detail: Mapping[str, Any] | None, event: dict[str, Any]) -> dict[str, Any] | None:
        """Step 3, after the pause: the reply event if the task still waits, else what happened instead."""
        ended, request = self.read_request(detail)
        if ended is not None:
            return ended
        if request is None or self.waiting_since is None:
            return None
        return event if self.clock() >= self.waiting_since + self.settle_seconds else None

    # -- The same poll over the sync hooks (poke) and the async ones (trigger) --------------------

    def poll(self, api: AirflowAPIHook, callbell: CallbellHook, log: Any) -> dict[str, Any] | None:
        """One poll from a worker (poke and reschedule modes): the event that ends it, or ``None``.

        The request first (an answered or ended one ends the wait; a phone outside
        ``assigned_users`` raises), then each number's conversation since the request was made, then
        :meth:`decide`; a reply inside the settle window is held here, in a sleep, then confirmed.
        """
        ended, request = self.read_request(api.get_hitl_detail(*self._ti))
        if request is None:
            return ended
        checks: dict[str, ReplyCheck] = {}
        for number in self.numbers:
            if number not in self.contact_uuids:
                contact = callbell.get_contact_by_phone(number, self.channel_uuid)
                self.connected = True
                if contact is None:
                    continue
                self.contact_uuids[number] = contact["uuid"]
            scan = self._scan(request, number)
            for message in callbell.list_contact_messages(
                self.contact_uuids[number], since=request.created_at, max_pages=MAX_PAGES_PER_POLL
            ):
                scan.feed(conversation_message(message))  # cut down as read: one page held at a time
            self.connected = True
            checks[number] = self._log(scan.result(), number, log)
        event, pause = self.decide(request, checks)
        if event is None or event["event"] != "reply":
            return event
        if pause > 0:
            log.info(
                "%s answered; submitting once the HITL task has waited %s s",
                event["number"],
                self.settle_seconds,
            )
            time.sleep(pause)
        return self.confirm(api.get_hitl_detail(*self._ti), event)

    async def apoll(self, api: AirflowAPIHook, callbell: CallbellHook, log: Any) -> dict[str, Any] | None:
        """:meth:`poll` for the triggerer, over the async hooks; the settle window is an ``asyncio`` sleep."""
        ended, request = self.read_request(await api.aget_hitl_detail(*self._ti))
        if request is None:
            return ended
        checks: dict[str, ReplyCheck] = {}
        for number in self.numbers:
            if number not in self.contact_uuids:
                contact = await callbell.aget_contact_by_phone(number, self.channel_uuid)
                self.connected = True
                if contact is None:
                    continue
                self.contact_uuids[number] = contact["uuid"]
            scan = self._scan(request, number)
            async for message in callbell.alist_contact_messages(
                self.contact_uuids[number], since=request.created_at, max_pages=MAX_PAGES_PER_POLL
            ):
                scan.feed(conversation_message(message))
            self.connected = True
            checks[number] = self._log(scan.result(), number, log)
        event, pause = self.decide(request, checks)
        if event is None or event["event"] != "reply":
            return event
        if pause > 0:
            log.info(
                "%s answered; submitting once the HITL task has waited %s s",
                event["number"],
                self.settle_seconds,
            )
            await asyncio.sleep(pause)
        return self.confirm(await api.aget_hitl_detail(*self._ti), event)

    @property
    def _ti(self) -> tuple[str, str, str, int]:
        return self.dag_id, self.run_id, self.task_id, self.map_index

    def _scan(self, request: HITLRequestView, number: str) -> QuestionWindowScan:
        """The reply sensor's fold over a conversation, with the request's options as the rule, cut
        at the next question to the same phone."""
        return QuestionWindowScan(
            HITLAnswerRule.for_request(request), self._ti, request.created_at, self.reprompted.get(number, 0)
        )

    def _log(self, check: ReplyCheck, number: str, log: Any) -> ReplyCheck:
        if self._logged.get(number) != check:  # one log line per change, not per poll
            log_check(log, check, number, None)
            self._logged[number] = check
        return check


def _reply_time(reply: Mapping[str, Any]) -> datetime:
    """When a reply was sent; an unreadable time sorts last (a scan never accepts one anyway)."""
    return parse_created_at(reply.get("createdAt")) or datetime.max.replace(tzinfo=timezone.utc)


def asks_for(text: str | None) -> tuple[str, int] | None:
    """The task instance a HITL question's text asks for: its "Respond in Airflow" link's path
    (``/dags/.../runs/.../tasks/.../required_actions``) and map index; ``None`` if it carries no such link."""
    found = _REQUIRED_ACTIONS_LINK.search(text or "")
    if found is None:
        return None
    index = parse_qs(found.group("query") or "").get("map_index", ["-1"])[0]
    try:
        return found.group("path"), int(index)
    except ValueError:
        return found.group("path"), -1


class QuestionWindowScan:
    """:class:`~airflow_provider_callbell.replies.ReplyScan` over one question's window of a conversation.

    Several HITL tasks may ask the same phone at once (two runs of a DAG, two approvals): a reply
    answers the latest question before it. Questions are told apart by their "Respond in Airflow"
    link (DAG, run, task and map index). Reading newest first:

    - an outgoing message after the request was made that asks for another task instance closes
      this request's window: everything newer, read so far, answers that newer question, and the
      scan starts again from there;
    - this request's own question opens the window: nothing older answers it.

    Replies in between (and newer than the request) are ours.
    """

    def __init__(
        self, rule: ReplyRule, ti: tuple[str, str, str, int], after: datetime, reprompted: int = 0
    ) -> None:
        dag_id, run_id, task_id, map_index = ti
        self._own = (f"/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/required_actions", map_index)
        self._rule, self._after, self._reprompted = rule, after, reprompted
        self._scan = ReplyScan(rule, None, reprompted)
        self._opened = False

    def feed(self, message: Mapping[str, Any]) -> None:
        """Take the next message, older than every one fed before."""
        if self._opened:
            return  # older than this request's own question: it answers an earlier one
        if message.get("status") == "sent":
            text = message.get("text")
            asked = asks_for(text if isinstance(text, str) else None)
            if asked == self._own:
                self._opened = True
                return
            created = parse_created_at(message.get("createdAt"))
            if asked is not None and created is not None and created > self._after:
                self._scan = ReplyScan(self._rule, None, self._reprompted)  # a newer question's replies
                return
        self._scan.feed(message)

    def result(self) -> ReplyCheck:
        """What the window read so far says."""
        return self._scan.result()
