"""Bulk sends in a real Airflow: the example DAG's fan-out, and a real task retry that must not resend."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TEST_DAGS = Path(__file__).resolve().parent / "dags"


def test_list_and_fan_out_over_chunks(airflow, callbell_sandbox):
    result = airflow.dags_test("example_callbell_bulk", callbell_sandbox)
    assert result.returncode == 0, result.output[-3000:]
    texts = Counter((m["body"]["to"], m["body"]["content"]["text"]) for m in callbell_sandbox.messages)
    audience = {(f"+3162{i:07d}", f"Hi Customer {i}, order {100_000 + i} has shipped") for i in range(30)}
    assert set(texts) - audience == {
        (to, "Stock report for 2026-01-01 is ready") for to in ("+31612345678", "+31687654321", "tg_4242")
    }
    assert audience <= set(texts)
    assert set(texts.values()) == {1}  # nothing sent twice
    uuid_of = {m["body"]["to"]: m["uuid"] for m in callbell_sandbox.messages}
    for chunk in range(3):
        assert result.xcom("send_chunk", map_index=chunk) == [
            uuid_of[f"+3162{i:07d}"] for i in range(chunk * 10, chunk * 10 + 10)
        ]
    assert result.xcom("send_list", key="callbell_summary")["sent"] == 3


def test_a_task_retry_sends_only_to_recipients_the_first_try_did_not_reach(airflow, callbell_sandbox):
    """Try 1 reaches 10 of 12 recipients (the sandbox refuses two, once), fails, and try 2 sends two."""
    callbell_sandbox.configure(flaky_recipients={"+31610000005": 1, "+31610000009": 1})
    no_retries = json.dumps({**json.loads(callbell_sandbox.connection_json), "extra": {"max_retries": 0}})
    result = airflow.dags_test(
        "callbell_bulk_retry",
        callbell_sandbox,
        AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS),
        AIRFLOW_CONN_CALLBELL_DEFAULT=no_retries,
    )
    assert result.returncode == 0, result.output[-3000:]
    assert "2 of 12 Callbell messages failed (10 sent)" in result.output
    sent = {m["body"]["to"]: m["body"]["content"]["text"] for m in callbell_sandbox.messages}
    assert len(callbell_sandbox.messages) == len(sent) == 12  # each recipient exactly once over both tries
    assert sent == {f"+3161000{i:04d}": f"Hi R{i} from try {2 if i in (5, 9) else 1}" for i in range(12)}
    uuid_of = {m["body"]["to"]: m["uuid"] for m in callbell_sandbox.messages}
    assert result.xcom("send") == [uuid_of[f"+3161000{i:04d}"] for i in range(12)]
    summary = result.xcom("send", key="callbell_summary")
    assert (summary["sent"], summary["sent_earlier"], summary["failed"]) == (2, 10, 0)
    assert "10 of 12 messages were sent by an earlier attempt" in result.output  # read from the Variable
    assert result.xcom("progress_deleted") is True  # and the Variable is deleted once all were sent


def test_at_most_once_holds_across_task_retries(airflow, callbell_sandbox):
    """Try 1: Callbell enqueues +31610000001's message but answers 500, and +31610000002 is refused.

    The retry sends the refused message, not the one whose fate is unknown, and still fails so that a
    person checks it.
    """
    callbell_sandbox.configure(
        unanswered_recipients={"+31610000001": 1}, flaky_recipients={"+31610000002": 1}
    )
    no_retries = json.dumps({**json.loads(callbell_sandbox.connection_json), "extra": {"max_retries": 0}})
    result = airflow.dags_test(
        "callbell_bulk_unknown",
        callbell_sandbox,
        AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS),
        AIRFLOW_CONN_CALLBELL_DEFAULT=no_retries,
    )
    assert result.state == "failed", result.output[-3000:]
    assert "2 of 4 Callbell messages failed (2 sent, 1 unknown)" in result.output  # try 1
    assert "1 of 4 Callbell messages failed (3 sent, 2 of them by earlier tries, 1 unknown)" in result.output
    assert "1 messages got no clear answer in an earlier attempt" in result.output
    sent = Counter(m["body"]["to"] for m in callbell_sandbox.messages)
    assert sent == Counter(f"+3161000{i:04d}" for i in range(4))  # each exactly once over both tries
    summary = result.xcom("send", key="callbell_summary")
    assert (summary["sent"], summary["sent_earlier"], summary["failed"], summary["unknown"]) == (1, 2, 0, 1)


def test_untrusted_progress_sends_nothing_and_an_unanswered_single_send_is_found(airflow, callbell_sandbox):
    """Through the real task SDK: Variables written by a task, read raw by the next (see the DAG)."""
    callbell_sandbox.configure(unanswered_recipients={"+31610000077": 1})
    result = airflow.dags_test(
        "callbell_state_fail_closed", callbell_sandbox, AIRFLOW__CORE__DAGS_FOLDER=str(TEST_DAGS)
    )
    assert result.state == "failed", result.output[-3000:]
    key = f"callbell_progress/callbell_state_fail_closed/{{}}/{result.run_id}/-1"
    assert f"Variable '{key.format('send_junk')}' cannot be used: it is not JSON" in result.output
    assert (
        f"Variable '{key.format('send_wrong_shape')}' cannot be used: its 'sent' holds [0], not a "
        "[start, stop) pair of integers" in result.output
    )
    assert result.output.count("CallbellProgressError") >= 2
    # Nothing to the bulk recipients; the single message once over both tries, its uuid returned.
    assert [m["body"]["to"] for m in callbell_sandbox.messages] == ["+31610000077"]
    assert result.xcom("send_one") == callbell_sandbox.messages[0]["uuid"]
    assert "the conversation lists it as" in result.output
