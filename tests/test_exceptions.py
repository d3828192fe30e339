"""The exception tree: drawn where it is defined, typed for each failure, and carried through trigger events."""

from __future__ import annotations

import json
import re

import pytest

from airflow_provider_callbell import exceptions
from airflow_provider_callbell.exceptions import (
    CallbellAPIError,
    CallbellError,
    CallbellNoAnswerError,
    CallbellTimeoutError,
    error_event,
    error_from_event,
)


def drawn_tree() -> dict[str, str]:
    """Each class of the docstring's drawing, with the class drawn as its parent."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (exceptions.__doc__ or "").splitlines():
        match = re.match(r"^[\s│]*(?:[├└]── )?(\w+)", line)
        if not match or not line.lstrip().startswith(("AirflowException", "├", "└", "│")):
            continue
        depth = line.index(match[1]) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[match[1]] = stack[-1][1]
        stack.append((depth, match[1]))
    return parents


def test_the_docstring_draws_every_class_under_its_parent():
    classes = {
        name: cls
        for name, cls in vars(exceptions).items()
        if isinstance(cls, type) and issubclass(cls, CallbellError)
    }
    drawn = drawn_tree()
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        parent = next(
            base
            for base in cls.__bases__
            if issubclass(base, CallbellError) or base.__name__ == "AirflowException"
        )
        assert drawn[name] == parent.__name__, name


class TestNoAnswer:
    def test_is_an_api_error_without_status_and_transient(self):
        for kind in (CallbellNoAnswerError, CallbellTimeoutError):
            err = kind("no answer from Callbell (ConnectError: refused)", endpoint="GET /auth/me")
            assert isinstance(err, CallbellAPIError)
            assert err.status_code is None
            assert err.is_transient
            assert err.maybe_acted_on
        assert issubclass(CallbellTimeoutError, CallbellNoAnswerError)

    def test_known_not_sent(self):
        assert not CallbellNoAnswerError("x", maybe_acted_on=False).maybe_acted_on


@pytest.mark.parametrize(
    "err",
    [
        CallbellNoAnswerError("no answer", endpoint="GET /messages/status/x"),
        CallbellTimeoutError("no complete answer within 35 s", endpoint="GET /messages/status/x"),
        exceptions.CallbellInvalidResponseError("odd", status_code=200, endpoint="GET /x", body="[]"),
        exceptions.CallbellAuthError("refused", status_code=401, endpoint="GET /x"),
        exceptions.CallbellConnectionConfigError("Connection 'c' is not defined"),
    ],
    ids=lambda err: type(err).__name__,
)
def test_an_error_event_rebuilds_the_same_type(err):
    event = json.loads(json.dumps(error_event(err)))  # what the triggerer hands the task: plain JSON
    rebuilt = error_from_event(event)
    assert type(rebuilt) is type(err)
    assert str(rebuilt) == str(err)
    assert getattr(rebuilt, "is_transient", None) == getattr(err, "is_transient", None)
