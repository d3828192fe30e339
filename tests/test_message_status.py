from __future__ import annotations

import pytest

from airflow_provider_callbell.exceptions import (
    CallbellError,
    CallbellMessageFailedError,
    CallbellValidationError,
)
from airflow_provider_callbell.message_status import (
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_TARGET_STATUSES,
    MESSAGE_STATUSES,
    check_status_sets,
    failure_reason,
    message_outcome,
)
from airflow_provider_callbell.version_compat import AirflowFailException
from tests.helpers import UUID


def outcome(status, targets=DEFAULT_TARGET_STATUSES, failures=DEFAULT_FAILURE_STATUSES, payload=None):
    message = {"uuid": UUID, "status": status, "messageStatusPayload": payload or {}}
    return message_outcome(message, targets, failures)


class TestMessageOutcome:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            pytest.param("enqueued", None, id="enqueued-waits"),
            pytest.param("sent", None, id="sent-waits"),
            pytest.param("delivered", "delivered", id="delivered-done"),
            pytest.param("read", "read", id="read-done"),
            pytest.param("mismatch", None, id="mismatch-waits-as-sent"),
            pytest.param("some_new_status", None, id="unknown-waits"),
        ],
    )
    def test_default_statuses(self, status, expected):
        assert outcome(status) == expected

    @pytest.mark.parametrize("status", ["failed", "deleted"])
    def test_final_statuses_fail_by_default(self, status):
        with pytest.raises(CallbellMessageFailedError) as excinfo:
            outcome(status, payload={"reason": "number not on WhatsApp"} if status == "failed" else None)
        err = excinfo.value
        assert (err.uuid, err.status) == (UUID, status)
        assert err.reason == ("number not on WhatsApp" if status == "failed" else "no reason given")
        assert str(err) == f"Callbell message {UUID} ended {status!r}: {err.reason}"

    def test_failure_is_final_for_airflow(self):
        assert issubclass(CallbellMessageFailedError, CallbellError)
        assert issubclass(CallbellMessageFailedError, AirflowFailException)  # no pointless retries

    @pytest.mark.parametrize(
        ("status", "targets", "expected"),
        [
            pytest.param("read", ("delivered",), "read", id="read-passed-delivered"),
            pytest.param("delivered", ("sent",), "delivered", id="delivered-passed-sent"),
            pytest.param("sent", ("read",), None, id="sent-not-yet-read"),
            pytest.param("mismatch", ("sent",), "mismatch", id="mismatch-counts-as-sent"),
            pytest.param("mismatch", ("mismatch",), "mismatch", id="mismatch-as-target"),
            pytest.param("failed", ("delivered", "failed"), "failed", id="failed-as-target"),
            pytest.param("deleted", ("deleted",), "deleted", id="deleted-as-target"),
        ],
    )
    def test_targets(self, status, targets, expected):
        failures = () if "failed" in targets else DEFAULT_FAILURE_STATUSES
        assert outcome(status, targets, failures) == expected

    def test_failure_statuses_are_checked_first(self):
        with pytest.raises(CallbellMessageFailedError, match="ended 'mismatch'"):
            outcome("mismatch", ("sent",), ("failed", "mismatch"))


class TestFailureReason:
    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            pytest.param({"reason": "blocked"}, "blocked", id="documented"),
            pytest.param({"code": 131026}, '{"code": 131026}', id="undocumented-shape"),
            pytest.param({}, "no reason given", id="empty"),
            pytest.param(None, "no reason given", id="absent"),
        ],
    )
    def test_reason(self, payload, reason):
        assert failure_reason({"messageStatusPayload": payload}) == reason


class TestCheckStatusSets:
    def test_defaults(self):
        assert check_status_sets(DEFAULT_TARGET_STATUSES, DEFAULT_FAILURE_STATUSES) == (
            ("delivered", "read"),
            ("failed",),
        )

    def test_one_string_is_one_status(self):
        assert check_status_sets("read", []) == (("read",), ())

    @pytest.mark.parametrize(
        ("targets", "failures", "match"),
        [
            pytest.param(("delivred",), (), r"target_statuses must be Callbell message statuses", id="typo"),
            pytest.param(
                ("read",), ("faild",), r"failure_statuses must be .* got 'faild'", id="failure-typo"
            ),
            pytest.param((), (), "target_statuses must name at least one status", id="no-target"),
            pytest.param(
                None, (), "target_statuses must be a status or a list of statuses, got None", id="none"
            ),
            pytest.param(
                ("read", "failed"), ("failed",), "must not share a status, got failed", id="overlap"
            ),
        ],
    )
    def test_mistakes_are_named(self, targets, failures, match):
        with pytest.raises(CallbellValidationError, match=match):
            check_status_sets(targets, failures)

    def test_every_documented_status_is_known(self):
        assert set(MESSAGE_STATUSES) == {
            "enqueued",
            "sent",
            "delivered",
            "read",
            "failed",
            "mismatch",
            "deleted",
        }
