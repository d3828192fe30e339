"""Whether a conversation holds the awaited answer: one rule for the reply sensor, its trigger, and any
other wait for a person's answer (the HITL bridge reuses it).

Callbell lists a contact's messages newest first; outgoing ones (``sent``) carry a uuid, the
customer's (``received``) do not. So an answer is found by its place in that list: among the
``received`` messages newer than a reference (the question's uuid, or the start of the wait), the
oldest one that matches wins. Nothing here does HTTP or imports Airflow, so the sensor's poke and the
trigger decide with exactly the same code, and tests can feed it plain lists.

Everything a conversation holds is customer text or server data, so it is read fail-closed:

- each message is cut down as it is read (:func:`conversation_message`): the five fields the rule
  needs, of the right types (else :class:`~airflow_provider_callbell.exceptions.CallbellInvalidResponseError`
  naming the field), ``text`` cut to :data:`MAX_REPLY_CHARS` before any matching;
- a message whose ``createdAt`` cannot be read is never newer than the question: it is no answer;
- the read is folded message by message (:class:`ReplyScan`), so a poll holds one page, never the
  whole conversation;
- a wrong answer is reprompted at most once, by the caller's own record (``reprompted``) as well as by
  the reprompts the conversation lists (which may lag behind what was sent).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.exceptions import CallbellInvalidResponseError, CallbellValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

#: Callbell's page size is not documented; the reference is looked for this deep at most per poll.
MAX_PAGES_PER_POLL = 10

#: The longest answer text read, in characters; the rest is cut before any matching. WhatsApp and
#: Telegram cap a text message at 4,096 characters, so no real answer is cut. It bounds what the
#: DAG's ``pattern`` (Python's ``re``, which has no timeout and holds the GIL, so running it in a
#: thread would not spare the event loop) and the normalisation of ``choices`` run over.
MAX_REPLY_CHARS = 4096

#: The fields of a conversation's message a wait reads; :func:`conversation_message` keeps only these.
MESSAGE_FIELDS = ("uuid", "status", "text", "createdAt", "from")

# A letter or a digit: where an answer starts and ends once surrounding punctuation is ignored.
_WORD = re.compile(r"[^\W_]")


def normalize_reply(text: str) -> str:
    """Compare answers without case, surrounding spaces and punctuation, inner spaces collapsed.

    "Yes!", " YES. " and "*yes*" are "yes". Linear in the text's length: the ends are found by two
    single-character searches, never a backtracking pattern.
    """
    first = _WORD.search(text)
    if first is None:
        return ""
    last = _WORD.search(text[::-1])
    assert last is not None  # the forward search found one
    return " ".join(text[first.start() : len(text) - last.start()].casefold().split())


@functools.lru_cache(maxsize=256)
def _pattern_found(pattern: str, text: str) -> bool:
    """``re.search`` of a DAG's pattern, once per distinct answer (a poll re-reads the same answers).

    256 entries of at most :data:`MAX_REPLY_CHARS` characters: about 1 MiB at most.
    """
    return re.search(pattern, text.strip()) is not None


def conversation_message(message: Any, endpoint: str = "GET /contacts/:uuid/messages") -> dict[str, Any]:
    """One message of a conversation as a wait reads it: checked, and cut down to :data:`MESSAGE_FIELDS`.

    ``status``, ``uuid``, ``text``, ``createdAt`` and ``from`` must be strings (or ``null``), else the
    answer is unusable: :class:`~airflow_provider_callbell.exceptions.CallbellInvalidResponseError`
    naming the field, never an untyped error later. ``text`` is cut to :data:`MAX_REPLY_CHARS`.
    ``createdAt`` is kept as given; :func:`parse_created_at` reads it (an unreadable one makes the
    message no answer). Apply it to each message as it is read, so that a page of large messages is
    not held once the next page is read.
    """
    if not isinstance(message, dict):
        raise CallbellInvalidResponseError(
            f"a conversation's message must be a JSON object, got {type(message).__name__}", endpoint=endpoint
        )
    kept: dict[str, Any] = {}
    for field in MESSAGE_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, str):
            raise CallbellInvalidResponseError(
                f"a conversation's message has a {field!r} of type {type(value).__name__}; "
                "expected a string or null",
                endpoint=endpoint,
            )
        kept[field] = value
    if kept["text"] is not None:
        kept["text"] = kept["text"][:MAX_REPLY_CHARS]
    return kept


def parse_created_at(value: Any) -> datetime | None:
    """Callbell's ``createdAt`` (ISO 8601, UTC ``Z``) as an aware datetime, or ``None`` if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        created = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo is not None else created.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ReplyRule:
    """Which answers count: one of ``choices``, a match of ``pattern``, or (neither) any answer.

    ``reprompt`` is the text sent back after a wrong answer; the rule also uses it to recognise, in
    the conversation itself, the wrong answers that were already answered with it.
    """

    choices: tuple[str, ...] = ()
    pattern: str | None = None
    reprompt: str | None = None

    @classmethod
    def build(
        cls, choices: Sequence[str] | None = None, pattern: str | None = None, reprompt: str | None = None
    ) -> ReplyRule:
        """Check the arguments, naming the one at fault, before anything is sent or awaited."""
        if choices is not None and pattern is not None:
            raise CallbellValidationError("give choices or pattern, not both")
        if choices is not None:
            if isinstance(choices, str) or not choices or not all(isinstance(c, str) for c in choices):
                raise CallbellValidationError(
                    f"choices must be a non-empty list of strings such as ['yes', 'no'], got {choices!r}"
                )
            normalized = [normalize_reply(choice) for choice in choices]
            if not all(normalized):
                raise CallbellValidationError(
                    f"choices must each hold a letter or a digit (case, spaces and punctuation are "
                    f"ignored when answers are compared), got {list(choices)!r}"
                )
            if len(set(normalized)) != len(normalized):
                raise CallbellValidationError(
                    f"choices must differ once case, spaces and punctuation are ignored, got {list(choices)!r}"
                )
        if pattern is not None:
            if not isinstance(pattern, str) or not pattern:
                raise CallbellValidationError(
                    f"pattern must be a non-empty regular expression, got {pattern!r}"
                )
            try:
                re.compile(pattern)
            except re.error as err:
                raise CallbellValidationError(
                    f"pattern is not a valid regular expression ({err}): {pattern!r}"
                ) from None
        if reprompt is not None and not (isinstance(reprompt, str) and reprompt.strip()):
            raise CallbellValidationError(f"reprompt must be a non-empty text or None, got {reprompt!r}")
        return cls(tuple(choices or ()), pattern, reprompt)

    def match(self, text: str | None) -> tuple[bool, str | None]:
        """Whether ``text`` is an accepted answer, and the canonical choice it stands for.

        Only the first :data:`MAX_REPLY_CHARS` characters of ``text`` are read.
        """
        if text is not None:
            text = text[:MAX_REPLY_CHARS]
        if self.choices:
            answer = normalize_reply(text or "")
            choice = next((c for c in self.choices if normalize_reply(c) == answer), None)
            return choice is not None, choice
        if self.pattern is not None:
            return text is not None and _pattern_found(self.pattern, text), None
        return True, None

    def _is_reprompt(self, message: Mapping[str, Any]) -> bool:
        text = message.get("text")
        return (
            self.reprompt is not None
            and message.get("status") == "sent"
            and isinstance(text, str)
            and text.strip() == self.reprompt.strip()
        )


@dataclass(frozen=True)
class ReplyCheck:
    """What one read of the conversation found.

    :param reply: the accepted answer as the sensor returns it, or ``None``.
    :param needs_reprompt: a wrong answer came that was not reprompted yet: not after the last reprompt
        the conversation lists, nor in the caller's record (``reprompted``).
    :param wrong: how many wrong answers are newer than the reference (and older than the reply).
        After sending a reprompt, keep it as the ``reprompted`` of the next reads.
    :param reference_found: ``False`` while the question (or, without one, the contact) is not
        listed (yet).
    """

    reply: dict[str, Any] | None = None
    needs_reprompt: bool = False
    wrong: int = 0
    reference_found: bool = True


class ReplyScan:
    """:func:`check_replies` fed one message at a time, newest first, as the pages of a conversation come.

    It keeps a few counters and the oldest accepted answer, never the messages, so a poll holds one
    page at a time. Feed it what :func:`conversation_message` returns (plain dicts with the same
    fields work too), then ask :meth:`result`:

    .. code-block:: python

        scan = ReplyScan(rule, after_uuid=question_uuid, reprompted=reprompted)
        for message in hook.list_contact_messages(contact, stop_at_uuid=question_uuid, max_pages=10):
            scan.feed(conversation_message(message))
        check = scan.result()

    :param rule: which answers count.
    :param after_uuid: the question: the read must end with it (the hook's ``stop_at_uuid``), else
        nothing counts yet. ``None``: the read holds only messages since the start of the wait.
    :param reprompted: how many wrong answers (oldest first) the caller already sent a reprompt for:
        its own record, which holds while the conversation does not list that reprompt yet.
    """

    def __init__(self, rule: ReplyRule, after_uuid: str | None = None, reprompted: int = 0) -> None:
        self.rule = rule
        self.after_uuid = after_uuid
        self.reprompted = reprompted
        self._accepted: Mapping[str, Any] | None = None
        self._choice: str | None = None
        self._wrong = 0  # wrong answers older than the oldest accepted one seen so far
        self._unanswered = False  # a wrong answer newer than every reprompt listed
        self._reprompt_seen = False
        self._last_uuid: Any = None
        self._any = False

    def feed(self, message: Mapping[str, Any]) -> None:
        """Take the next message, older than every one fed before."""
        self._any = True
        self._last_uuid = message.get("uuid")
        if self.after_uuid is not None and self._last_uuid == self.after_uuid:
            return  # the question itself: the end of the read
        if self.rule._is_reprompt(message):
            self._reprompt_seen = True
        if message.get("status") != "received" or parse_created_at(message.get("createdAt")) is None:
            return  # not the customer's, or of a time that cannot be read: never newer than the question
        text = message.get("text")
        accepted, choice = self.rule.match(text if isinstance(text, str) else None)
        if accepted:
            self._accepted, self._choice, self._wrong = message, choice, 0
        else:
            self._wrong += 1
            self._unanswered = self._unanswered or not self._reprompt_seen

    def result(self) -> ReplyCheck:
        """What the messages fed so far say, once the read is over."""
        if self.after_uuid is not None and (not self._any or self._last_uuid != self.after_uuid):
            return ReplyCheck(reference_found=False)
        if self._accepted is not None:
            text = self._accepted.get("text")
            reply = {
                "text": text[:MAX_REPLY_CHARS] if isinstance(text, str) else None,
                "choice": self._choice,
                "from": self._accepted.get("from"),
                "createdAt": self._accepted.get("createdAt"),
            }
            return ReplyCheck(reply=reply, wrong=self._wrong)
        needs = self._unanswered and self._wrong > self.reprompted and self.rule.reprompt is not None
        return ReplyCheck(needs_reprompt=needs, wrong=self._wrong)


def check_replies(
    newest_first: Iterable[Mapping[str, Any]],
    rule: ReplyRule,
    after_uuid: str | None,
    reprompted: int = 0,
) -> ReplyCheck:
    """Find the answer in a conversation read newest first, as far as the reference.

    With ``after_uuid`` the messages must end with that message (the hook's ``stop_at_uuid``); if
    they do not, the question is not listed yet (Callbell lists a message once it is processed), so
    nothing counts. Without it, they hold only messages since the start of the wait (the hook's
    ``since``). Answers are read oldest first: the first accepted one wins. A ``received`` message
    whose ``createdAt`` cannot be read is no answer at all. A wrong one needs a reprompt unless a
    reprompt was listed after it or the caller's record says it was reprompted (``reprompted``:
    wrong answers, oldest first, already reprompted), so each wrong answer is reprompted at most once
    (wrong answers read in the same poll share one). See :class:`ReplyScan` to fold pages as they come.
    """
    scan = ReplyScan(rule, after_uuid, reprompted)
    for message in newest_first:
        scan.feed(message)
    return scan.result()


def log_check(log: Any, check: ReplyCheck, to: str, after_message_uuid: str | None) -> None:
    """What a poll found, in the sensor's and the trigger's logs alike."""
    if not check.reference_found and after_message_uuid is None:
        log.info("No conversation with %s yet", to)
    elif not check.reference_found:
        log.info(
            "Message %s is not listed in the conversation with %s yet (is it the number it was sent to?)",
            after_message_uuid,
            to,
        )
    elif check.reply is None:
        log.info("No accepted answer from %s yet (%d other answers)", to, check.wrong)
