"""Whether a conversation holds the awaited answer: one rule for the reply sensor and its trigger.

Callbell lists a contact's messages newest first; outgoing ones (``sent``) carry a uuid, the
customer's (``received``) do not. So an answer is found by its place in that list: among the
``received`` messages newer than a reference (the question's uuid, or the start of the wait), the
oldest one that matches wins. Nothing here does HTTP or imports Airflow, so the sensor's poke and the
trigger decide with exactly the same code, and tests can feed it plain lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.exceptions import CallbellValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Callbell's page size is not documented; the reference is looked for this deep at most per poll.
MAX_PAGES_PER_POLL = 10

# Everything that is not a letter or a digit, at either end: "Yes!", " YES. " and "*yes*" are "yes".
_SURROUNDING = re.compile(r"^[\W_]+|[\W_]+$")


def normalize_reply(text: str) -> str:
    """Compare answers without case, surrounding spaces and punctuation, inner spaces collapsed."""
    return " ".join(_SURROUNDING.sub("", text).casefold().split())


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
        """Whether ``text`` is an accepted answer, and the canonical choice it stands for."""
        if self.choices:
            answer = normalize_reply(text or "")
            choice = next((c for c in self.choices if normalize_reply(c) == answer), None)
            return choice is not None, choice
        if self.pattern is not None:
            return text is not None and re.search(self.pattern, text.strip()) is not None, None
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
    :param needs_reprompt: a wrong answer came after the last reprompt (or there was none yet).
    :param wrong: how many wrong answers are newer than the reference.
    :param reference_found: ``False`` while the question is not listed in the conversation (yet).
    """

    reply: dict[str, Any] | None = None
    needs_reprompt: bool = False
    wrong: int = 0
    reference_found: bool = True


def check_replies(
    newest_first: Sequence[Mapping[str, Any]], rule: ReplyRule, after_uuid: str | None
) -> ReplyCheck:
    """Find the answer in a conversation read newest first, as far as the reference.

    With ``after_uuid`` the list must end with that message (the hook's ``stop_at_uuid``); if it does
    not, the question is not listed yet (Callbell lists a message once it is processed), so nothing
    counts. Without it, the list holds only messages since the start of the wait (the hook's
    ``since``). Answers are read oldest first: the first accepted one wins; a wrong one needs a
    reprompt unless a reprompt was sent after it, so each wrong answer is reprompted at most once
    (wrong answers read in the same poll share one).
    """
    messages = list(newest_first)
    if after_uuid is not None:
        if not messages or messages[-1].get("uuid") != after_uuid:
            return ReplyCheck(reference_found=False)
        messages.pop()
    wrong = 0
    unanswered_wrong = False
    for message in reversed(messages):
        if rule._is_reprompt(message):
            unanswered_wrong = False
        if message.get("status") != "received":
            continue
        accepted, choice = rule.match(message.get("text"))
        if accepted:
            reply = {
                "text": message.get("text"),
                "choice": choice,
                "from": message.get("from"),
                "createdAt": message.get("createdAt"),
            }
            return ReplyCheck(reply=reply, wrong=wrong)
        wrong += 1
        unanswered_wrong = True
    return ReplyCheck(needs_reprompt=unanswered_wrong and rule.reprompt is not None, wrong=wrong)
