"""The rule deciding which answer counts, fed plain conversations as Callbell lists them (newest first)."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from airflow_provider_callbell.exceptions import CallbellInvalidResponseError, CallbellValidationError
from airflow_provider_callbell.replies import (
    MAX_REPLY_CHARS,
    ReplyRule,
    ReplyScan,
    check_replies,
    conversation_message,
    normalize_reply,
    parse_created_at,
)

QUESTION = "cf839626ac7949879b88bcffd41d34fe"
REPROMPT = "Please reply YES or NO"


def sent(text: str, uuid: str = "0" * 32, at: str = "2026-11-30T08:00:00Z") -> dict[str, Any]:
    return {"text": text, "uuid": uuid, "status": "sent", "createdAt": at, "from": "3120", "to": "316"}


def received(text: str | None, at: str = "2026-11-30T08:00:00Z") -> dict[str, Any]:
    return {"text": text, "status": "received", "createdAt": at, "from": "31612345678", "to": "3120"}


def note(text: str) -> dict[str, Any]:
    return {"text": text, "status": "note", "createdAt": "2026-11-30T08:00:00Z"}


def conversation(*oldest_first: dict[str, Any]) -> list[dict[str, Any]]:
    """Write tests oldest first, as people read a chat; Callbell lists newest first."""
    return list(reversed(oldest_first))


YES_NO = ReplyRule.build(["yes", "no"], reprompt=REPROMPT)


class TestNormalize:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("Yes", "yes", id="case"),
            pytest.param("  YES.  ", "yes", id="spaces-and-dot"),
            pytest.param("yes!!!", "yes", id="exclamation"),
            pytest.param("*yes*", "yes", id="bold-markup"),
            pytest.param("¡Sí!", "sí", id="accents-kept"),
            pytest.param("yes   please", "yes please", id="inner-spaces"),
            pytest.param("ACK 👍", "ack", id="emoji"),
        ],
    )
    def test_ignores_case_surrounding_spaces_and_punctuation(self, text: str, expected: str) -> None:
        assert normalize_reply(text) == expected


class TestMatch:
    @pytest.mark.parametrize(
        ("text", "choice"),
        [
            pytest.param("YES!", "Yes", id="canonical-choice-returned"),
            pytest.param(" no. ", "No", id="no"),
            pytest.param("yes please", None, id="extra-words"),
            pytest.param("y", None, id="prefix"),
            pytest.param(None, None, id="attachment-without-text"),
        ],
    )
    def test_choices(self, text: str | None, choice: str | None) -> None:
        assert ReplyRule.build(["Yes", "No"]).match(text) == (choice is not None, choice)

    @pytest.mark.parametrize(
        ("text", "accepted"),
        [("ack", True), ("ACK, on it", True), ("  ack", True), ("hack", False), ("no", False), (None, False)],
    )
    def test_pattern_is_searched(self, text: str | None, accepted: bool) -> None:
        assert ReplyRule.build(pattern=r"(?i)\back\b").match(text) == (accepted, None)

    @pytest.mark.parametrize("text", ["anything", "", None])
    def test_neither_accepts_any_answer(self, text: str | None) -> None:
        assert ReplyRule.build().match(text) == (True, None)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"choices": ["yes"], "pattern": "yes"}, "not both", id="both"),
            pytest.param({"choices": []}, "choices must be a non-empty list", id="empty"),
            pytest.param({"choices": "yes"}, "choices must be a non-empty list", id="a-string"),
            pytest.param({"choices": ["yes", 1]}, "choices must be a non-empty list", id="not-strings"),
            pytest.param({"choices": ["yes", "?!"]}, "each hold a letter or a digit", id="punctuation-only"),
            pytest.param({"choices": ["yes", "YES!"]}, "choices must differ", id="duplicates"),
            pytest.param({"pattern": "("}, "pattern is not a valid regular expression", id="bad-regex"),
            pytest.param({"pattern": ""}, "pattern must be a non-empty", id="empty-regex"),
            pytest.param({"reprompt": "  "}, "reprompt must be a non-empty", id="blank-reprompt"),
        ],
    )
    def test_bad_rule_names_the_argument(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(CallbellValidationError, match=match):
            ReplyRule.build(**kwargs)


class TestCheckReplies:
    def test_accepted_answer_after_the_question(self) -> None:
        messages = conversation(sent("Publish?", QUESTION), received("Yes!", at="2026-11-30T08:01:00Z"))
        check = check_replies(messages, YES_NO, QUESTION)
        assert check.reply == {
            "text": "Yes!",
            "choice": "yes",
            "from": "31612345678",
            "createdAt": "2026-11-30T08:01:00Z",
        }

    def test_answers_before_the_question_are_ignored(self) -> None:
        # What the hook yields with stop_at_uuid ends at the question; older answers are never read,
        # and if they were, nothing below the question counts.
        messages = conversation(received("yes"), sent("Publish?", QUESTION))
        assert check_replies(messages, YES_NO, QUESTION).reply is None
        assert check_replies(messages[:1], YES_NO, QUESTION).reply is None

    def test_question_not_listed_yet_counts_nothing(self) -> None:
        messages = conversation(received("yes"), sent("other question", "1" * 32))
        check = check_replies(messages, YES_NO, QUESTION)
        assert (check.reply, check.reference_found, check.needs_reprompt) == (None, False, False)
        assert not check_replies([], YES_NO, QUESTION).reference_found

    def test_oldest_accepted_answer_wins(self) -> None:
        messages = conversation(sent("Publish?", QUESTION), received("no"), received("yes"))
        assert check_replies(messages, YES_NO, QUESTION).reply["choice"] == "no"  # type: ignore[index]

    def test_same_second_is_ordered_by_the_list(self) -> None:
        same = "2026-11-30T08:00:00Z"
        messages = conversation(
            received("yes", at=same), sent("Publish?", QUESTION, at=same), received("no", at=same)
        )
        assert check_replies(messages[:2], YES_NO, QUESTION).reply["choice"] == "no"  # type: ignore[index]

    def test_notes_and_other_sent_messages_are_not_answers(self) -> None:
        messages = conversation(
            sent("Publish?", QUESTION), note("assigned to Ann"), sent("unrelated", "2" * 32)
        )
        check = check_replies(messages, ReplyRule.build(), QUESTION)
        assert (check.reply, check.wrong, check.needs_reprompt) == (None, 0, False)

    def test_wrong_answer_needs_one_reprompt(self) -> None:
        messages = conversation(sent("Publish?", QUESTION), received("maybe"))
        check = check_replies(messages, YES_NO, QUESTION)
        assert (check.reply, check.wrong, check.needs_reprompt) == (None, 1, True)

    def test_reprompted_wrong_answer_needs_no_other(self) -> None:
        messages = conversation(sent("Publish?", QUESTION), received("maybe"), sent(REPROMPT))
        assert not check_replies(messages, YES_NO, QUESTION).needs_reprompt

    def test_each_new_wrong_answer_needs_its_reprompt(self) -> None:
        messages = conversation(
            sent("Publish?", QUESTION), received("maybe"), sent(REPROMPT), received("dunno")
        )
        check = check_replies(messages, YES_NO, QUESTION)
        assert (check.wrong, check.needs_reprompt) == (2, True)

    def test_wrong_answers_read_together_share_a_reprompt(self) -> None:
        messages = conversation(
            sent("Publish?", QUESTION), received("maybe"), received("hmm"), sent(REPROMPT)
        )
        assert not check_replies(messages, YES_NO, QUESTION).needs_reprompt

    def test_other_sent_text_is_not_a_reprompt(self) -> None:
        messages = conversation(sent("Publish?", QUESTION), received("maybe"), sent("the report is late"))
        assert check_replies(messages, YES_NO, QUESTION).needs_reprompt

    def test_without_reprompt_nothing_is_reprompted(self) -> None:
        messages = conversation(sent("Publish?", QUESTION), received("maybe"))
        check = check_replies(messages, ReplyRule.build(["yes", "no"]), QUESTION)
        assert (check.wrong, check.needs_reprompt) == (1, False)

    def test_without_question_every_listed_answer_counts(self) -> None:
        messages = conversation(received("ACK"))
        reply = check_replies(messages, ReplyRule.build(pattern="(?i)^ack$"), None).reply
        assert reply is not None
        assert (reply["text"], reply["choice"]) == ("ACK", None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-12-12T10:56:36Z", "2023-12-12T10:56:36+00:00"),
        ("2023-12-12T10:56:36+01:00", "2023-12-12T10:56:36+01:00"),
        ("2023-12-12T10:56:36", "2023-12-12T10:56:36+00:00"),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_created_at(value: Any, expected: str | None) -> None:
    parsed = parse_created_at(value)
    assert (parsed.isoformat() if parsed else None) == expected


class TestFailClosed:
    """Customer text and server data are read fail-closed: typed, cut, of a readable time, bounded."""

    @pytest.mark.parametrize("at", [None, "", "yesterday", "2026-13-45T99:00:00Z", 1_700_000_000])
    def test_an_answer_whose_time_cannot_be_read_is_no_answer(self, at: Any) -> None:
        old_yes = {**received("yes"), "createdAt": at}
        messages = conversation(sent("Publish?", QUESTION), old_yes)
        check = check_replies(messages, YES_NO, QUESTION)
        assert (check.reply, check.wrong, check.needs_reprompt) == (None, 0, False)

    def test_without_question_too(self) -> None:
        messages = conversation({**received("yes"), "createdAt": "an hour ago"}, received("no"))
        reply = check_replies(messages, YES_NO, None).reply
        assert reply is not None
        assert reply["choice"] == "no"

    @pytest.mark.parametrize("field", ["text", "status", "uuid", "createdAt", "from"])
    @pytest.mark.parametrize("value", [42, ["yes"], {"yes": True}, True])
    def test_a_field_of_the_wrong_type_is_a_typed_error_naming_it(self, field: str, value: Any) -> None:
        with pytest.raises(CallbellInvalidResponseError, match=f"{field!r} of type"):
            conversation_message({**received("yes"), field: value})

    def test_a_message_that_is_not_an_object_is_a_typed_error(self) -> None:
        with pytest.raises(CallbellInvalidResponseError, match="must be a JSON object"):
            conversation_message(["yes"])

    def test_only_the_fields_a_wait_reads_are_kept_and_text_is_cut(self) -> None:
        big = {**received("y" * 100_000), "attachments": ["x" * 100_000], "channel": {"x": 1}}
        kept = conversation_message(big)
        assert sorted(kept) == ["createdAt", "from", "status", "text", "uuid"]
        assert len(kept["text"]) == MAX_REPLY_CHARS

    def test_text_is_cut_before_any_matching(self) -> None:
        """ "yes" past the cut is never read, whatever the rule."""
        late_yes = "x" * MAX_REPLY_CHARS + " yes"
        assert ReplyRule.build(pattern=r"yes").match(late_yes) == (False, None)
        messages = conversation(sent("Publish?", QUESTION), received("x" * 10 * MAX_REPLY_CHARS))
        reply = check_replies(messages, ReplyRule.build(), QUESTION).reply
        assert reply is not None
        assert len(reply["text"]) == MAX_REPLY_CHARS

    def test_matching_a_long_text_is_fast(self) -> None:
        """Punctuation between two letters made the old normalisation quadratic (seconds for 100k characters)."""
        texts = [
            "y" + "!" * 1_000_000 + "s",
            "!" * 1_000_000 + "a",
            " " * 1_000_000 + "yes!",
            "?" * 1_000_000,
        ]
        started = time.perf_counter()
        for text in texts:
            ReplyRule.build(["yes", "no"]).match(text)
            ReplyRule.build(pattern=r"(?i)^ack\b").match(text)
        normalize_reply("y" + "!" * 5_000 + "s")  # the old pattern: about 2 s for this one
        assert time.perf_counter() - started < 0.5

    def test_the_scan_holds_no_message(self) -> None:
        """Pages are folded as they come: a poll's memory does not grow with the conversation."""

        def pages() -> Any:
            for n in range(2000):  # 2,000 wrong answers of 4 kB each: 8 MB of text
                yield conversation_message(received(f"{n} " + "m" * 5000))
            yield sent("Publish?", QUESTION)

        tracemalloc.start()
        try:
            scan = ReplyScan(YES_NO, QUESTION)
            for message in pages():
                scan.feed(message)
            check = scan.result()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert check.wrong == 2000
        assert peak < 512 * 1024

    def test_the_callers_record_holds_while_the_reprompt_is_not_listed(self) -> None:
        lagging = conversation(sent("Publish?", QUESTION), received("maybe"))  # reprompt sent, not listed
        assert not check_replies(lagging, YES_NO, QUESTION, reprompted=1).needs_reprompt
        newer = conversation(sent("Publish?", QUESTION), received("maybe"), received("dunno"))
        check = check_replies(newer, YES_NO, QUESTION, reprompted=1)
        assert (check.wrong, check.needs_reprompt) == (2, True)

    def test_a_listed_reprompt_counts_without_a_record(self) -> None:
        """A new try has lost the record: the conversation's reprompts still count."""
        listed = conversation(sent("Publish?", QUESTION), received("maybe"), sent(REPROMPT))
        assert not check_replies(listed, YES_NO, QUESTION, reprompted=0).needs_reprompt
