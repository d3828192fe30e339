"""Fault injection against the local sandbox: what reaches Callbell, what fails, and how long it takes.

Each run sends numbered messages through one hook while the sandbox injects one kind of fault, then
checks every message was accepted at most once (exactly once where only refusals were injected), that
failures surface as the typed errors, and prints its figures (faults, messages, duplicates, time).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from airflow_provider_callbell.exceptions import CallbellAPIError
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.retry import RetryPolicy
from airflow_provider_callbell.sandbox import CallbellSandbox

pytestmark = pytest.mark.integration


@dataclass
class Run:
    callbell_sandbox: CallbellSandbox
    ok: list[int] = field(default_factory=list)
    errors: dict[int, CallbellAPIError] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def accepted(self) -> Counter[int]:
        """How many times the sandbox accepted each numbered message."""
        return Counter(int(m["body"]["content"]["text"]) for m in self.sandbox.messages)

    @property
    def faults(self) -> Counter[int | str]:
        return Counter(r["status"] for r in self.sandbox.requests if r["status"] != 200)

    def report(self, name: str, capsys: pytest.CaptureFixture[str]) -> None:
        duplicates = sum(n - 1 for n in self.accepted.values() if n > 1)
        with capsys.disabled():
            print(
                f"\n[faults] {name}: {len(self.ok) + len(self.errors)} messages, faults injected "
                f"{dict(self.faults)}, sent ok {len(self.ok)}, failed {len(self.errors)}, accepted "
                f"{sum(self.accepted.values())}, duplicates {duplicates}, {self.seconds:.2f} s"
            )


def send_all(
    callbell_sandbox: CallbellSandbox,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    timeout: tuple[float, float] | None = None,
    **policy: object,
) -> Run:
    monkeypatch.setenv("AIRFLOW_CONN_CALLBELL_DEFAULT", callbell_sandbox.connection_json)
    hook = CallbellHook(timeout=timeout, retry_policy=RetryPolicy(backoff=0.02, **policy))  # type: ignore[arg-type]
    run = Run(callbell_sandbox)
    start = time.monotonic()
    for i in range(count):
        try:
            hook.send_message("+31612345678", content={"text": str(i)})
            run.ok.append(i)
        except CallbellAPIError as err:
            run.errors[i] = err
    run.seconds = time.monotonic() - start
    return run


def test_quarter_of_answers_503(monkeypatch, capsys):
    with CallbellSandbox(error_rate=0.25, seed=3) as callbell_sandbox:
        run = send_all(callbell_sandbox, monkeypatch, 200, max_retries=5)
    run.report("25% 503", capsys)
    assert run.faults[503] > 20
    assert run.errors == {}
    assert run.accepted == Counter(range(200))  # every message exactly once


def test_rate_limit_with_retry_after(monkeypatch, capsys):
    with CallbellSandbox(rate_limit=25) as callbell_sandbox:
        run = send_all(callbell_sandbox, monkeypatch, 60)
    run.report("429 at 25 req/s, Retry-After", capsys)
    assert run.faults[429] >= 2
    assert run.errors == {}
    assert run.accepted == Counter(range(60))
    assert run.seconds >= 2.0  # two full Retry-After pauses were honoured


def test_rate_limit_exhausted_is_typed(monkeypatch, capsys):
    with CallbellSandbox(rate_limit=1) as callbell_sandbox:
        run = send_all(callbell_sandbox, monkeypatch, 2, max_retries=1, max_seconds=0.5)
    run.report("429 beyond the retry budget", capsys)
    assert run.ok == [0]
    assert run.errors[1].status_code == 429
    assert type(run.errors[1]).__name__ == "CallbellRateLimitError"
    assert run.accepted == Counter([0])


@pytest.mark.parametrize("delivery", ["at_most_once", "at_least_once"])
def test_dropped_connections(monkeypatch, capsys, delivery):
    with CallbellSandbox(drop_rate=0.2, seed=5) as callbell_sandbox:
        run = send_all(callbell_sandbox, monkeypatch, 100, delivery=delivery)
    run.report(f"20% dropped connections, {delivery}", capsys)
    assert run.faults["dropped"] > 5
    assert max(run.accepted.values()) == 1  # the sandbox drops before acting: never a duplicate
    if delivery == "at_most_once":
        assert run.errors  # a dropped send is reported, not repeated
        assert all(err.status_code is None for err in run.errors.values())
        assert set(run.accepted) == set(run.ok)
    else:
        assert run.errors == {}
        assert run.accepted == Counter(range(100))


@pytest.mark.parametrize("delivery", ["at_most_once", "at_least_once"])
def test_slow_answers_past_the_read_timeout(monkeypatch, capsys, delivery):
    """The trade-off in one test: Callbell acted, but answered after the client gave up."""
    with CallbellSandbox(latency=0.3) as callbell_sandbox:
        run = send_all(callbell_sandbox, monkeypatch, 3, timeout=(1.0, 0.1), delivery=delivery, max_retries=2)
        time.sleep(0.4)  # let the last slow answers land in the sandbox
        run.report(f"answers 0.3 s late, read timeout 0.1 s, {delivery}", capsys)
        accepted = run.accepted
    assert run.ok == []
    assert all("ReadTimeout" in str(err) and err.status_code is None for err in run.errors.values())
    if delivery == "at_most_once":
        assert accepted == Counter(range(3))  # each went out once although the task saw a failure
    else:
        assert accepted == Counter(dict.fromkeys(range(3), 3))  # each retry sent it again
    assert run.seconds < 3 * (3 * 0.1 + 1.0)  # no request hung the worker
