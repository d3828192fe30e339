"""Waiting for a reply in a real Airflow (``airflow dags test``), poke and deferrable, against the sandbox.

The answer is posted while the sensor waits: by a thread watching the sandbox and posting
``/_sandbox/inbound`` as another process would, or by the sandbox's auto-reply.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from packaging.version import Version

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.version_compat import AIRFLOW_VERSION

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

APPROVER = "+31612345678"
REPROMPT = "Sorry, I did not get that: please reply YES or NO."
DEFERRABLE = {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
TEST_DAGS = Path(__file__).resolve().parent / "dags"


@contextmanager
def answering(callbell_sandbox: CallbellSandbox, script: list[tuple[str, str]]) -> Iterator[None]:
    """For each (text awaited, answer): once a message with that text was sent, post the answer."""
    stop = threading.Event()
    inbound = f"http://127.0.0.1:{callbell_sandbox.port}/_sandbox/inbound"

    def run() -> None:
        for awaited, answer in script:
            while not stop.is_set():
                if any(m["body"]["content"].get("text") == awaited for m in callbell_sandbox.messages):
                    break
                time.sleep(0.1)
            else:
                return
            stop.wait(1.0)  # the sensor is waiting by now
            response = requests.post(inbound, json={"from": APPROVER, "text": answer}, timeout=5)
            assert response.status_code == 201

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def followed(result: Any, branch: str) -> list[str]:
    """The tasks a branch chose: Airflow records them for its skip logic (``skipmixin_key``)."""
    return list(result.xcom(branch, key="skipmixin_key")["followed"])


def texts(callbell_sandbox: CallbellSandbox) -> list[str]:
    return [m["body"]["content"]["text"] for m in callbell_sandbox.messages]


class TestApproval:
    def test_poke_wrong_answer_reprompted_then_yes_publishes(self, airflow) -> None:
        with CallbellSandbox(status_interval=0) as callbell_sandbox:
            question = "Publish the sales numbers for 2026-01-01? Reply YES or NO."
            with answering(callbell_sandbox, [(question, "maybe later"), (REPROMPT, "Yes!")]):
                result = airflow.dags_test("example_callbell_approval", callbell_sandbox)
            conversation = callbell_sandbox.conversation(callbell_sandbox.contacts[0]["uuid"])
        assert result.returncode == 0, result.output[-3000:]
        assert texts(callbell_sandbox) == [question, REPROMPT]
        reply = result.xcom("wait_for_answer")
        assert {k: reply[k] for k in ("text", "choice", "from")} == {
            "text": "Yes!",
            "choice": "yes",
            "from": "31612345678",
        }
        assert reply["createdAt"] == conversation[0]["createdAt"]
        assert followed(result, "decide") == ["publish"]
        assert result.xcom("publish") == "published the numbers for 2026-01-01"
        with pytest.raises(AssertionError, match="no XCom"):
            result.xcom("hold_back")
        assert "[DAG TEST] running trigger in line" not in result.output

    def test_deferrable_wrong_answer_reprompted_from_the_worker_then_no_holds_back(self, airflow) -> None:
        with CallbellSandbox(status_interval=0) as callbell_sandbox:
            question = "Publish the sales numbers for 2026-01-01? Reply YES or NO."
            with answering(callbell_sandbox, [(question, "hmm"), (REPROMPT, "NO.")]):
                result = airflow.dags_test("example_callbell_approval", callbell_sandbox, **DEFERRABLE)
        assert result.returncode == 0, result.output[-3000:]
        assert "[DAG TEST] running trigger in line" in result.output
        assert texts(callbell_sandbox) == [question, REPROMPT]
        reply = result.xcom("wait_for_answer")
        assert (reply["text"], reply["choice"]) == ("NO.", "no")
        assert followed(result, "decide") == ["hold_back"]
        assert result.xcom("hold_back") == f"held back: 31612345678 answered 'NO.' at {reply['createdAt']}"
        with pytest.raises(AssertionError, match="no XCom"):
            result.xcom("publish")


class TestEscalation:
    # Each path once, each in the other mode: a dags test costs ~20 s, and both modes share the sensor code.
    @pytest.mark.parametrize("env", [pytest.param(DEFERRABLE, id="deferrable")])
    def test_acknowledged(self, airflow, env: dict[str, str]) -> None:
        with CallbellSandbox(
            status_interval=0, auto_reply="ack, on it", auto_reply_delay=2
        ) as callbell_sandbox:
            result = airflow.dags_test("example_callbell_escalation", callbell_sandbox, **env)
        page = "🚨 example_callbell_escalation: the nightly load for 2026-01-01 failed. Reply ACK to take it."
        assert [(m["body"]["to"], m["body"]["content"]["text"]) for m in callbell_sandbox.messages] == [
            (APPROVER, page)
        ]
        assert ("[DAG TEST] running trigger in line" in result.output) == bool(env)
        reply = result.xcom("wait_for_ack")
        assert reply["text"] == "ack, on it"
        assert followed(result, "escalate_or_not") == ["acknowledged"]
        assert result.xcom("acknowledged") == f"31612345678 acknowledged at {reply['createdAt']}"

    @pytest.mark.parametrize("env", [pytest.param({}, id="poke")])
    def test_not_acknowledged_pages_the_secondary(self, airflow, env: dict[str, str]) -> None:
        with CallbellSandbox(status_interval=0) as callbell_sandbox:
            result = airflow.dags_test(
                "example_callbell_escalation", callbell_sandbox, CALLBELL_EXAMPLE_ACK_TIMEOUT="4", **env
            )
        assert ("[DAG TEST] running trigger in line" in result.output) == bool(env)
        assert [m["body"]["to"] for m in callbell_sandbox.messages] == [APPROVER, "+31687654321"]
        assert callbell_sandbox.messages[1]["body"]["content"]["text"] == (
            "🚨 example_callbell_escalation: the nightly load for 2026-01-01 failed and +31612345678 "
            "did not acknowledge. Please take it."
        )
        assert followed(result, "escalate_or_not") == ["page_secondary"]
        assert result.xcom("page_secondary") == callbell_sandbox.messages[1]["uuid"]
        with pytest.raises(AssertionError, match="no XCom"):
            result.xcom("wait_for_ack")


def test_reschedule_mode_without_question_counts_from_the_first_start(airflow) -> None:
    """An answer arriving between two reschedules counts; one from before the task started does not."""
    with CallbellSandbox(status_interval=0) as callbell_sandbox:
        callbell_sandbox.receive(APPROVER, "an old answer, before the task started")
        time.sleep(1.1)  # Callbell's createdAt has whole seconds
        stop = threading.Event()

        def answer_after_two_pokes() -> None:
            while not stop.is_set():
                pages = [r for r in callbell_sandbox.requests if r["path"].endswith("/messages")]
                if len(pages) >= 2:  # two pokes, so at least one reschedule
                    callbell_sandbox.receive(APPROVER, "fresh")
                    return
                time.sleep(0.1)

        thread = threading.Thread(target=answer_after_two_pokes, daemon=True)
        thread.start()
        try:
            result = airflow.dags_test(
                "callbell_reply_reschedule", callbell_sandbox, AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS)
            )
        finally:
            stop.set()
            thread.join(timeout=10)
        pages = [r for r in callbell_sandbox.requests if r["path"].endswith("/messages")]
    assert result.returncode == 0, result.output[-3000:]
    assert result.xcom("wait_for_anything")["text"] == "fresh"
    assert len(pages) >= 3


@pytest.mark.skipif(Version(AIRFLOW_VERSION).release < (3, 3), reason="the task state store is Airflow 3.3's")
def test_reschedule_mode_sensor_that_never_connects_fails_naming_the_host(airflow) -> None:
    """Real reschedules (a new process per poke): the count survives in the task state store, and the
    sensor fails with the host and the likely cause, not with its 5-minute timeout."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = f'{{"conn_type": "callbell", "host": "http://127.0.0.1:{port}/v1", "password": "t0ken-x"}}'
    result = airflow.dags_test(
        "callbell_status_unreachable",
        None,
        AIRFLOW_CONN_CALLBELL_DEFAULT=connection,
        AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS),
    )
    assert result.state == "failed", result.output[-3000:]
    assert f"no connection to 127.0.0.1:{port} could be made in" in result.output
    assert "is the Callbell sandbox running" in result.output
    assert "AirflowSensorTimeout" not in result.output  # not the 5-minute timeout
    tries = re.search(r"could be made in (\d+) tries", result.output)
    assert tries is not None
    assert int(tries.group(1)) >= 3  # counted across processes: the pokes were rescheduled
