"""The bridge's rules without I/O: replies mapped to options, who may answer, the settle window."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar
from unittest import mock

import pytest

from airflow_provider_callbell.exceptions import AirflowAPIError, CallbellValidationError
from airflow_provider_callbell.hitl import (
    HITLAnswerRule,
    HITLRequestView,
    HITLWait,
    check_who_may_answer,
    reprompt_text,
)
from airflow_provider_callbell.replies import ReplyCheck, check_replies

PHONE = "+31612345678"


def request(
    options: list[str], *, multiple: bool = False, state: str = "awaiting_input", **fields: Any
) -> HITLRequestView:
    detail = {
        "options": options,
        "subject": "Publish?",
        "multiple": multiple,
        "assigned_users": [],
        "created_at": "2026-12-03T12:00:00.123456Z",
        "response_received": False,
        "task_instance": {"state": state},
        **fields,
    }
    return HITLRequestView.parse(detail)


APPROVAL = request(["Approve", "Reject"])
CHANNELS = request(["Email", "SMS", "Slack"], multiple=True)


class TestAnswerRule:
    @pytest.mark.parametrize(
        ("text", "chosen"),
        [
            pytest.param("yes", ["Approve"], id="yes"),
            pytest.param(" YES! ", ["Approve"], id="yes-shouted"),
            pytest.param("ok", ["Approve"], id="ok"),
            pytest.param("approve", ["Approve"], id="option-text"),
            pytest.param("*Approved*", ["Approve"], id="approved"),
            pytest.param("1", ["Approve"], id="number"),
            pytest.param("No.", ["Reject"], id="no"),
            pytest.param("2", ["Reject"], id="number-2"),
            pytest.param("REJECT", ["Reject"], id="reject"),
            pytest.param("maybe later", None, id="other"),
            pytest.param("3", None, id="no-such-number"),
            pytest.param("yes, no", None, id="two-answers-to-a-single-choice"),
            pytest.param("", None, id="empty"),
            pytest.param(None, None, id="no-text"),
        ],
    )
    def test_approval(self, text: str | None, chosen: list[str] | None) -> None:
        assert HITLAnswerRule.for_request(APPROVAL).chosen(text) == chosen

    @pytest.mark.parametrize(
        ("text", "chosen"),
        [
            pytest.param("1, 3", ["Email", "Slack"], id="numbers-comma"),
            pytest.param("1 3", ["Email", "Slack"], id="numbers-space"),
            pytest.param("slack and EMAIL", ["Email", "Slack"], id="texts-in-request-order"),
            pytest.param("sms & 2", ["SMS"], id="same-option-twice"),
            pytest.param("Slack", ["Slack"], id="one"),
            pytest.param("1;2;3", ["Email", "SMS", "Slack"], id="all"),
            pytest.param("1, 4", None, id="no-such-number"),
            pytest.param("Email, fax", None, id="unknown-option"),
            pytest.param("yes", None, id="yes-is-not-an-option-here"),
            pytest.param(",", None, id="separators-only"),
        ],
    )
    def test_multiple(self, text: str, chosen: list[str] | None) -> None:
        assert HITLAnswerRule.for_request(CHANNELS).chosen(text) == chosen

    def test_several_answers_need_multiple(self) -> None:
        single = request(["Email", "SMS", "Slack"])
        assert HITLAnswerRule.for_request(single).chosen("1, 3") is None
        assert HITLAnswerRule.for_request(single).chosen("3") == ["Slack"]

    def test_an_options_text_wins_over_a_number(self) -> None:
        rule = HITLAnswerRule.for_request(request(["2 days", "2", "1"]))
        assert rule.chosen("2") == ["2"]
        assert rule.chosen("1") == ["1"]
        assert rule.chosen("3") == ["1"]
        assert rule.chosen("2 days") == ["2 days"]

    def test_yes_no_only_for_an_approval(self) -> None:
        assert HITLAnswerRule.for_request(request(["Approve", "Hold"])).chosen("yes") is None

    def test_check_replies_uses_the_rule_and_reprompts_once(self) -> None:
        rule = HITLAnswerRule.for_request(APPROVAL)
        conversation = [  # newest first, as Callbell lists them
            {"status": "received", "text": "what?", "createdAt": "2026-12-03T12:00:04Z"},
            {"status": "sent", "text": rule.reprompt},
            {"status": "received", "text": "maybe", "createdAt": "2026-12-03T12:00:02Z"},
        ]
        assert check_replies(conversation, rule, None).needs_reprompt  # "what?" has not had one
        assert not check_replies(conversation[1:], rule, None).needs_reprompt  # "maybe" had its one
        answered = [{"status": "received", "text": "Yes", "createdAt": "2026-12-03T12:00:06Z"}, *conversation]
        check = check_replies(answered, rule, None)
        assert (check.reply or {})["choice"] == "Approve"
        assert check.wrong == 2

    def test_reprompt_lists_the_numbered_options(self) -> None:
        assert reprompt_text(APPROVAL) == (
            "Sorry, that is not an answer to “Publish?”. Please reply with one of: 1 Approve, 2 Reject (or yes / no)."
        )
        assert reprompt_text(CHANNELS) == (
            "Sorry, that is not an answer to “Publish?”. Please reply with one or more of (e.g. 1, 3): "
            "1 Email, 2 SMS, 3 Slack."
        )
        many = request([f"option {n}" for n in range(1, 31)], subject="x" * 5000)
        text = reprompt_text(many)
        assert len(text) < 1000
        assert "20 option 20, …" in text


class TestRequestView:
    @pytest.mark.parametrize(
        ("change", "field"),
        [
            pytest.param({"options": []}, "options", id="no-options"),
            pytest.param({"options": ["a", 1]}, "options", id="option-not-text"),
            pytest.param({"created_at": "yesterday"}, "created_at", id="created-at"),
            pytest.param({"created_at": "2026-12-03T12:00:00"}, "created_at", id="created-at-naive"),
            pytest.param({"assigned_users": [{"name": "x"}]}, "assigned_users", id="assignee-without-id"),
        ],
    )
    def test_a_malformed_answer_is_refused_naming_the_field(self, change: dict[str, Any], field: str) -> None:
        with pytest.raises(AirflowAPIError, match=field):
            request(**{"options": ["Approve", "Reject"], **change})

    def test_reads_params_values_as_the_scheduler_submits_them(self) -> None:
        view = request(["A"], params={"n": {"value": 3, "description": None, "schema": {}}})
        assert view.params_input == {"n": 3}
        assert view.created_at == datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=timezone.utc)


class TestWhoMayAnswer:
    def test_anyone_in_to_when_the_task_assigns_nobody(self) -> None:
        check_who_may_answer([PHONE], {}, APPROVAL, "task 'bridge'")

    def test_a_phone_mapped_to_an_assigned_user(self) -> None:
        assigned = request(["Approve", "Reject"], assigned_users=[{"id": "alice", "name": "Alice"}])
        check_who_may_answer([PHONE], {PHONE: "alice"}, assigned, "task 'bridge'")

    @pytest.mark.parametrize(
        ("user_ids", "said"),
        [
            pytest.param({}, "+31612345678 to no user", id="unmapped"),
            pytest.param({PHONE: "mallory"}, "+31612345678 to 'mallory'", id="mapped-outside"),
        ],
    )
    def test_a_phone_outside_assigned_users_is_refused(self, user_ids: dict[str, str], said: str) -> None:
        assigned = request(["Approve", "Reject"], assigned_users=[{"id": "alice", "name": "Alice"}])
        with pytest.raises(CallbellValidationError, match="may not answer") as caught:
            check_who_may_answer([PHONE], user_ids, assigned, "task 'bridge'")
        assert str(caught.value).startswith("task 'bridge': +31612345678 may not answer")
        assert said in str(caught.value)
        assert "['alice']" in str(caught.value)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detail(state: str = "awaiting_input", answered: bool = False) -> dict[str, Any]:
    return {
        "options": ["Approve", "Reject"],
        "subject": "Publish?",
        "created_at": "2026-12-03T12:00:00Z",
        "response_received": answered,
        "chosen_options": ["Reject"] if answered else None,
        "responded_by_user": {"id": "alice", "name": "alice"} if answered else None,
        "task_instance": {"state": state},
    }


YES = ReplyCheck(reply={"text": "yes", "choice": "Approve", "from": "31612345678", "createdAt": "x"})


class TestSettleWindow:
    """Airflow 3.3.2 fails a HITL task answered in its first scheduler loop after it parks."""

    def wait(self, clock: Clock) -> HITLWait:
        return HITLWait(
            "dag", "run", "approve", -1, (PHONE,), {}, "task 'bridge'", settle_seconds=10, clock=clock
        )

    def test_a_reply_before_the_task_parks_waits(self) -> None:
        clock = Clock()
        wait = self.wait(clock)
        _, view = wait.read_request(detail(state="running"))  # the notifier sent the question; not parked yet
        assert view is not None
        assert wait.decide(view, {PHONE: YES}) == (None, 0.0)
        assert wait.waiting_since is None

    def test_a_reply_is_handed_on_only_after_the_task_waited_settle_seconds(self) -> None:
        clock = Clock()
        wait = self.wait(clock)
        _, view = wait.read_request(detail())
        assert view is not None
        assert wait.waiting_since == 1000.0
        event, pause = wait.decide(view, {PHONE: YES})
        assert pause == 10.0
        assert event is not None
        assert event["chosen_options"] == ["Approve"]
        clock.now += 9.9
        assert wait.confirm(detail(), event) is None  # still inside the window
        clock.now += 0.1
        assert wait.confirm(detail(), event) == event

    def test_seen_waiting_long_enough_the_reply_goes_at_once(self) -> None:
        clock = Clock()
        wait = self.wait(clock)
        wait.read_request(detail())
        clock.now += 30
        _, view = wait.read_request(detail())
        assert view is not None
        assert wait.decide(view, {PHONE: YES})[1] == 0.0

    def test_leaving_the_waiting_state_restarts_the_window(self) -> None:
        clock = Clock()
        wait = self.wait(clock)
        wait.read_request(detail())
        clock.now += 30
        wait.read_request(detail(state="scheduled"))
        assert wait.waiting_since is None

    def test_answered_during_the_pause_ends_without_the_reply(self) -> None:
        clock = Clock()
        wait = self.wait(clock)
        _, view = wait.read_request(detail())
        assert view is not None
        event, _ = wait.decide(view, {PHONE: YES})
        assert event is not None
        clock.now += 10
        assert wait.confirm(detail(answered=True), event) == {
            "event": "answered",
            "chosen_options": ["Reject"],
            "responded_by": "alice",
        }

    def test_ended_without_answer(self) -> None:
        wait = self.wait(Clock())
        assert wait.read_request(detail(state="failed")) == ({"event": "ended", "state": "failed"}, None)

    def test_no_request_yet(self) -> None:
        wait = self.wait(Clock())
        assert wait.read_request(None) == (None, None)

    def test_the_earliest_reply_over_several_numbers_wins(self) -> None:
        clock = Clock()
        other = "+31687654321"
        wait = HITLWait(
            "dag", "run", "approve", -1, (PHONE, other), {}, "task 'bridge'", settle_seconds=0, clock=clock
        )
        _, view = wait.read_request(detail())
        assert view is not None
        late = ReplyCheck(reply={"text": "no", "createdAt": "2026-12-03T12:00:09Z"})
        early = ReplyCheck(reply={"text": "yes", "createdAt": "2026-12-03T12:00:05Z"})
        event, _ = wait.decide(view, {PHONE: late, other: early})
        assert event is not None
        assert (event["number"], event["chosen_options"]) == (other, ["Approve"])


def test_the_earliest_reply_is_found_by_time_not_by_text() -> None:
    """Two offsets: 13:00:09+02:00 is 11:00:09Z, earlier than 12:00:05Z though it sorts later as text."""
    wait = HITLWait(
        "dag", "run", "approve", -1, (PHONE, "+31687654321"), {}, "task 'bridge'", settle_seconds=0
    )
    _, view = wait.read_request(detail())
    assert view is not None
    utc = ReplyCheck(reply={"text": "no", "createdAt": "2026-12-03T12:00:05Z"})
    plus_two = ReplyCheck(reply={"text": "yes", "createdAt": "2026-12-03T13:00:09+02:00"})
    event, _ = wait.decide(view, {PHONE: utc, "+31687654321": plus_two})
    assert event is not None
    assert (event["number"], event["chosen_options"]) == ("+31687654321", ["Approve"])


class FakeHooks:
    """The two hooks' sync methods a poll calls, answered from plain data."""

    def __init__(self, conversation: list[dict[str, Any]], state: str = "awaiting_input") -> None:
        self.conversation = conversation  # newest first
        self.detail = detail(state)

    def get_hitl_detail(self, *ti: Any) -> dict[str, Any]:
        return self.detail

    def get_contact_by_phone(self, number: str, channel_uuid: str | None) -> dict[str, Any]:
        return {"uuid": "c1"}

    def list_contact_messages(self, contact_uuid: str, **kwargs: Any) -> list[dict[str, Any]]:
        return list(self.conversation)


class TestRepromptRecord:
    """A reprompt the conversation does not list yet (Callbell lists a message once processed) is not sent twice."""

    def test_the_record_holds_until_the_conversation_lists_the_reprompt(self) -> None:
        log = mock.Mock()
        hooks = FakeHooks([{"status": "received", "text": "maybe", "createdAt": "2026-12-03T12:00:02Z"}])
        wait = HITLWait("dag", "run", "approve", -1, (PHONE,), {}, "task 'bridge'", settle_seconds=0)
        event = wait.poll(hooks, hooks, log)  # type: ignore[arg-type]
        assert event is not None
        assert (event["event"], event["wrong"]) == ("reprompt", {PHONE: 1})
        wait.record_reprompt(PHONE, event["wrong"][PHONE])  # the operator sent it
        assert wait.poll(hooks, hooks, log) is None  # not listed yet: the record says it went  # type: ignore[arg-type]
        assert wait.state()["reprompted"] == {PHONE: 1}
        hooks.conversation.insert(
            0, {"status": "received", "text": "perhaps", "createdAt": "2026-12-03T12:00:05Z"}
        )
        again = wait.poll(hooks, hooks, log)  # type: ignore[arg-type]
        assert again is not None
        assert (again["event"], again["wrong"]) == ("reprompt", {PHONE: 2})  # a new wrong answer: one more

    def test_an_unreadable_time_is_no_answer(self) -> None:
        hooks = FakeHooks([{"status": "received", "text": "yes", "createdAt": "not a time"}])
        wait = HITLWait("dag", "run", "approve", -1, (PHONE,), {}, "task 'bridge'", settle_seconds=0)
        assert wait.poll(hooks, hooks, mock.Mock()) is None  # type: ignore[arg-type]


def question(run_id: str, at: str, task_id: str = "approve", map_index: int = -1) -> dict[str, Any]:
    """The notifier's HITL message, with its "Respond in Airflow" link, as Callbell lists it."""
    return {
        "status": "sent",
        "uuid": f"q-{run_id}",
        "createdAt": at,
        "text": f"🙋 DAG dag: task {task_id} needs your input (run {run_id})\nPublish?\n"
        f"Options: Approve, Reject\nRespond in Airflow: http://127.0.0.1:8080/dags/dag/runs/{run_id}"
        f"/tasks/{task_id}/required_actions?map_index={map_index}",
    }


class SinceHooks(FakeHooks):
    """FakeHooks whose conversation read stops before ``since``, as the Callbell hook's does."""

    def __init__(self, conversation: list[dict[str, Any]], created_at: str) -> None:
        super().__init__(conversation)
        self.detail = {**self.detail, "created_at": created_at}

    def list_contact_messages(self, contact_uuid: str, **kwargs: Any) -> list[dict[str, Any]]:
        since = kwargs["since"]
        return [m for m in self.conversation if datetime.fromisoformat(m["createdAt"]) >= since]


class TestTwoQuestionsToOnePhone:
    """Two open requests to one phone: a reply answers the latest question before it."""

    CONVERSATION: ClassVar[list[dict[str, Any]]] = [  # newest first
        {"status": "received", "text": "yes", "createdAt": "2026-12-03T12:05:30+00:00"},
        question("run2", "2026-12-03T12:05:01+00:00"),
        question("run1", "2026-12-03T12:00:01+00:00"),
    ]

    def poll(self, run_id: str, created_at: str, conversation: list[dict[str, Any]]) -> Any:
        hooks = SinceHooks(conversation, created_at)
        wait = HITLWait("dag", run_id, "approve", -1, (PHONE,), {}, "task 'bridge'", settle_seconds=0)
        return wait.poll(hooks, hooks, mock.Mock())  # type: ignore[arg-type]

    def test_one_yes_after_the_second_question_answers_only_the_second(self) -> None:
        assert self.poll("run1", "2026-12-03T12:00:00+00:00", self.CONVERSATION) is None
        second = self.poll("run2", "2026-12-03T12:05:00+00:00", self.CONVERSATION)
        assert second is not None
        assert (second["event"], second["chosen_options"]) == ("reply", ["Approve"])

    def test_a_reply_between_the_questions_answers_the_first(self) -> None:
        conversation = [
            question("run2", "2026-12-03T12:05:01+00:00"),
            {"status": "received", "text": "no", "createdAt": "2026-12-03T12:04:00+00:00"},
            question("run1", "2026-12-03T12:00:01+00:00"),
        ]
        first = self.poll("run1", "2026-12-03T12:00:00+00:00", conversation)
        assert first is not None
        assert first["chosen_options"] == ["Reject"]
        assert self.poll("run2", "2026-12-03T12:05:00+00:00", conversation) is None

    def test_another_map_index_is_another_question(self) -> None:
        conversation = [
            {"status": "received", "text": "yes", "createdAt": "2026-12-03T12:05:30+00:00"},
            question("run1", "2026-12-03T12:05:01+00:00", map_index=1),
            question("run1", "2026-12-03T12:00:01+00:00"),
        ]
        assert self.poll("run1", "2026-12-03T12:00:00+00:00", conversation) is None
