"""The bulk send's progress in an Airflow Variable: key, batching, format, cleanup."""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_callbell import progress
from airflow_provider_callbell.exceptions import CallbellProgressError
from airflow_provider_callbell.progress import VariableProgress, progress_key
from airflow_provider_callbell.version_compat import AirflowFailException
from tests.helpers import Variables


class Writes(Variables):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def set(self, *args, **kwargs) -> None:  # type: ignore[override]
        self.writes += 1
        super().set(*args, **kwargs)


@pytest.fixture
def variables(monkeypatch):
    store = Writes()
    monkeypatch.setattr(progress, "Variable", store)
    return store


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def sent(i: int) -> dict[str, str]:
    return {"uuid": f"{i:032x}", "status": "enqueued"}


class TestVariableProgress:
    def test_key_names_the_task_instance_and_stays_within_airflows_limit(self):
        assert progress_key("dag", "group.task", "manual__2026-01-01T00:00:00+00:00", 3) == (
            "callbell_progress/dag/group.task/manual__2026-01-01T00:00:00+00:00/3"
        )
        long = progress_key("d" * 250, "t", "r", -1)
        assert long.startswith("callbell_progress/")
        assert len(long) <= 250

    def test_writes_in_batches_of_sent_messages_or_seconds(self, variables):
        clock = Clock()
        store = VariableProgress("k", clock=clock)
        store.begin(2000, "digest")
        for i in range(progress.FLUSH_EVERY - 1):
            store.record(i, sent(i))
        assert variables.writes == 0
        store.record(progress.FLUSH_EVERY - 1, sent(progress.FLUSH_EVERY - 1))
        assert variables.writes == 1
        store.record(600, sent(600))
        clock.now += progress.FLUSH_SECONDS
        store.record(601, sent(601))
        assert variables.writes == 2
        store.flush()
        store.flush()  # nothing new: no write
        assert variables.writes == 2

    def test_stores_ranges_and_uuids_never_failures(self, variables):
        store = VariableProgress("k")
        store.begin(6, "digest")
        for i in (0, 1, 2, 4):
            store.record(i, sent(i))
        store.record(3, {"error": "CallbellServerError: ...", "status_code": 503, "to": "+31612345678"})
        store.flush()
        assert json.loads(variables["k"]) == {
            "recipients_digest": "digest",
            "total": 6,
            "sent": [[0, 3], [4, 5]],
            "uuids": {str(i): f"{i:032x}" for i in (0, 1, 2, 4)},
        }
        assert "+31612345678" not in variables["k"]

    def test_a_message_whose_delivery_is_unknown_is_kept_for_the_next_try(self, variables):
        unknown = {
            "error": "CallbellServerError: ... (HTTP 500)",
            "status_code": 500,
            "delivery_unknown": True,
        }
        first = VariableProgress("k")
        first.begin(4, "digest")
        first.record(0, sent(0))
        first.record(1, unknown)
        first.record(2, unknown)
        first.flush()
        stored = json.loads(variables["k"])
        assert (stored["sent"], stored["unknown"]) == ([[0, 1]], [[1, 3]])

        second = VariableProgress("k")
        earlier = second.begin(4, "digest")
        assert earlier[0] == {"uuid": f"{0:032x}", "status": "sent_in_earlier_try"}
        assert all(earlier[i]["delivery_unknown"] and "error" in earlier[i] for i in (1, 2))
        assert set(earlier) == {0, 1, 2}
        second.record(2, sent(2))  # resent under at_least_once, and sent this time
        second.flush()
        stored = json.loads(variables["k"])
        assert (stored["sent"], stored["unknown"]) == ([[0, 1], [2, 3]], [[1, 2]])

    def test_big_sends_keep_indices_only(self, variables):
        store = VariableProgress("k", uuids_kept_max=3)
        store.begin(4, "digest")
        store.record(1, sent(1))
        store.flush()
        assert "uuids" not in json.loads(variables["k"])
        again = VariableProgress("k", uuids_kept_max=3)
        assert again.begin(4, "digest") == {1: {"status": "sent_in_earlier_try"}}

    def test_a_new_try_gets_what_earlier_ones_sent(self, variables):
        first = VariableProgress("k")
        first.begin(3, "digest")
        first.record(2, sent(2))
        first.flush()
        second = VariableProgress("k")
        assert second.begin(3, "digest") == {2: {"uuid": f"{2:032x}", "status": "sent_in_earlier_try"}}
        second.record(0, sent(0))
        second.flush()
        assert json.loads(variables["k"])["sent"] == [[0, 1], [2, 3]]  # what both tries sent

    def test_deletes_only_what_exists(self, variables, monkeypatch):
        store = VariableProgress("k")
        store.begin(1, "digest")
        monkeypatch.setattr(variables, "delete", lambda key: pytest.fail("nothing to delete"))
        store.delete()

    def test_the_value_is_read_as_raw_text_never_deserialized_by_airflow(self, variables, monkeypatch):
        """Airflow 3's deserialize_json=True logs a JSON error and returns the default: never ask it."""
        calls = []
        real_get = variables.get

        def get(key, default=None, deserialize_json=False):
            calls.append(deserialize_json)
            return real_get(key, default)

        monkeypatch.setattr(variables, "get", get)
        variables["k"] = "{not json"
        with pytest.raises(CallbellProgressError):
            VariableProgress("k").begin(1, "digest")
        assert calls == [False]


def valid(**changes) -> str:
    value = {"recipients_digest": "digest", "total": 10, "sent": [[0, 2], [5, 6]], "unknown": [[2, 3]]}
    value.update(changes)
    return json.dumps({k: v for k, v in value.items() if v is not None})


UNTRUSTED = [
    pytest.param("", id="empty"),
    pytest.param("{not json", id="not-json"),
    pytest.param("null", id="json-null"),
    pytest.param('"text"', id="a-string"),
    pytest.param("[[0, 1]]", id="a-list"),
    pytest.param("1" * 5000, id="a-5000-digit-number"),
    pytest.param("[" * 100_000 + "]" * 100_000, id="nested-100000-deep"),
    pytest.param(valid(recipients_digest=None), id="no-digest"),
    pytest.param(valid(total="10"), id="total-a-string"),
    pytest.param(valid(total=True), id="total-a-bool"),
    pytest.param(valid(sent=None), id="no-sent"),
    pytest.param(valid(sent={"0": 2}), id="sent-an-object"),
    pytest.param(valid(sent=[[0]]), id="range-of-one"),
    pytest.param(valid(sent=[[0, 1, 2]]), id="range-of-three"),
    pytest.param(valid(sent=[0, 1]), id="range-not-a-pair"),
    pytest.param(valid(sent=[[0, 1.5]]), id="range-a-float"),
    pytest.param(valid(sent=[[False, True]]), id="range-of-bools"),
    pytest.param(valid(sent=[["0", "1"]]), id="range-of-strings"),
    pytest.param(valid(sent=[[3, 2]]), id="range-backwards"),
    pytest.param(valid(sent=[[2, 2]]), id="range-empty"),
    pytest.param(valid(sent=[[-1, 2]]), id="range-negative"),
    pytest.param(valid(sent=[[8, 11]]), id="range-past-the-end"),
    pytest.param(valid(sent=[[5, 6], [0, 2]]), id="ranges-unsorted"),
    pytest.param(valid(sent=[[0, 5], [4, 6]]), id="ranges-overlap"),
    pytest.param(valid(unknown=[[1, 3]]), id="sent-and-unknown-overlap"),
    pytest.param(valid(unknown={"a": 1}), id="unknown-an-object"),
    pytest.param(valid(claimed={"a": 1}), id="claimed-an-object"),
    pytest.param(valid(claimed=[[5, 7]]), id="sent-and-claimed-overlap"),
    pytest.param(valid(claimed=[[2, 4]]), id="unknown-and-claimed-overlap"),
    pytest.param(valid(claimed=[[9, 11]]), id="claimed-past-the-end"),
    pytest.param(valid(uuids=[]), id="uuids-a-list"),
    pytest.param(valid(uuids={"0": 5}), id="uuid-a-number"),
    pytest.param(valid(uuids={"0": "x\n\u001b[31m"}), id="uuid-with-escapes"),
    pytest.param(valid(uuids={"00": "a" * 32}), id="uuid-index-not-canonical"),
    pytest.param(valid(uuids={"3": "a" * 32}), id="uuid-of-an-unsent-message"),
    pytest.param(valid(uuids={"99": "a" * 32}), id="uuid-out-of-bounds"),
    pytest.param(valid(extra=1), id="unknown-member"),
    pytest.param(valid(unknown_since=1_700_000_000), id="since-without-texts"),
    pytest.param(valid(unknown_since="now", unknown_texts=[]), id="since-a-string"),
    pytest.param(valid(unknown_since=1_700_000_000, unknown_texts=["abc"]), id="text-not-a-digest"),
    pytest.param(valid() + " " * 10_000, id="too-long"),
]


class TestFailsClosed:
    """A value that cannot be trusted sends nothing; an absent one is a first try."""

    @pytest.mark.parametrize("raw", UNTRUSTED)
    def test_an_untrusted_value_stops_the_send_naming_the_variable_and_the_way_out(self, variables, raw):
        variables["k"] = raw
        with pytest.raises(CallbellProgressError, match=r"^Variable 'k' cannot be used: ") as raised:
            VariableProgress("k").begin(10, "digest")
        message = str(raised.value)
        assert "nothing was sent" in message
        assert "airflow variables delete 'k'" in message
        assert "at_least_once" in message
        assert raised.value.key == "k"
        assert isinstance(raised.value, AirflowFailException)  # every retry would read the same value

    def test_the_valid_one_of_those_loads(self, variables):
        variables["k"] = valid(uuids={"5": "a" * 32}, claimed=[[3, 5], [6, 7]])
        earlier = VariableProgress("k").begin(10, "digest")
        assert set(earlier) == {0, 1, 2, 3, 4, 5, 6}
        assert earlier[3] == earlier[6] == progress.CLAIMED_EARLIER
        assert earlier[5] == {"uuid": "a" * 32, "status": "sent_in_earlier_try"}
        assert earlier[2]["delivery_unknown"] is True

    def test_absent_is_a_first_try(self, variables):
        assert VariableProgress("k").begin(10, "digest") == {}

    def test_at_least_once_sets_an_untrusted_value_aside_and_replaces_it(self, variables, caplog):
        variables["k"] = "{not json"
        store = VariableProgress("k", at_least_once=True)
        assert store.begin(3, "digest") == {}
        assert "cannot be used" in caplog.text
        store.record(1, sent(1))
        store.flush()
        assert json.loads(variables["k"])["sent"] == [[1, 2]]

    def test_other_recipients_stop_the_send_even_at_least_once(self, variables):
        variables["k"] = valid(recipients_digest="other")
        with pytest.raises(CallbellProgressError, match="other recipients than these 10"):
            VariableProgress("k", at_least_once=True).begin(10, "digest")

    @pytest.mark.parametrize(
        "ranges",
        [
            pytest.param([[0, 100_000]] * 2000, id="the-same-range-2000-times"),
            pytest.param([[i, 100_000] for i in range(2000)], id="nested-ranges"),
        ],
    )
    def test_overlapping_ranges_are_refused_in_linear_time(self, variables, ranges):
        """Each is 2 x 10^8 indices when loaded range by range (minutes); refused, it takes milliseconds."""
        variables["k"] = json.dumps({"recipients_digest": "digest", "total": 100_000, "sent": ranges})
        started = time.perf_counter()
        with pytest.raises(CallbellProgressError, match="out of order, overlaps"):
            VariableProgress("k").begin(100_000, "digest")
        assert time.perf_counter() - started < 1.0

    def test_the_largest_record_a_send_can_write_loads_and_is_not_refused_as_too_long(
        self, variables, monkeypatch
    ):
        monkeypatch.setattr(progress, "FLUSH_EVERY", 10**9)
        total = 20_000  # every other message sent, with its uuid: the most ranges and uuids there can be
        first = VariableProgress("k", clock=Clock())
        first.begin(total, "digest")
        for i in range(0, total, 2):
            first.record(i, {"uuid": f"{i:032x}-abc", "status": "enqueued"})
        for i in range(1, total, 4):
            first.record(i, {"error": "...", "delivery_unknown": True})
        first.claim(0, 1e9)  # and every other message claimed: each index starts a run of its own
        first.flush()
        assert json.loads(variables["k"])["claimed"][:2] == [[3, 4], [7, 8]]
        assert len(variables["k"]) <= progress.value_max_chars(total)
        earlier = VariableProgress("k").begin(total, "digest")
        assert len(earlier) == total


class TestTwoWriters:
    """A stalled earlier try that writes after a later one adds its record, never erases the later one's."""

    def test_a_late_writer_merges_instead_of_overwriting(self, variables):
        stalled = VariableProgress("k")  # try 1: sends 0 and 1, then stalls before writing
        stalled.begin(6, "digest")
        stalled.record(0, sent(0))
        stalled.record(1, {"error": "...", "delivery_unknown": True})

        later = VariableProgress("k")  # try 2, started while try 1 hangs: sees nothing recorded
        assert later.begin(6, "digest") == {}
        later.record(1, sent(1))  # and sends 1 (at least once) and 2-3, recording them
        later.record(2, sent(2))
        later.record(3, {"error": "...", "delivery_unknown": True})
        later.flush()

        stalled.flush()  # try 1 wakes up and writes
        stored = json.loads(variables["k"])
        assert stored["sent"] == [[0, 3]]  # 0 from try 1; 1 and 2 from try 2 (sent beats unknown)
        assert stored["unknown"] == [[3, 4]]
        assert stored["uuids"] == {str(i): f"{i:032x}" for i in range(3)}

        third = VariableProgress("k")  # the next retry skips what either sent
        assert set(third.begin(6, "digest")) == {0, 1, 2, 3}

    def test_the_later_writer_keeps_what_the_stalled_one_wrote_meanwhile(self, variables):
        later = VariableProgress("k")
        later.begin(4, "digest")
        later.record(3, sent(3))
        stalled = VariableProgress("k")
        stalled.begin(4, "digest")
        stalled.record(0, sent(0))
        stalled.flush()
        later.flush()
        assert json.loads(variables["k"])["sent"] == [[0, 1], [3, 4]]

    def test_a_late_writer_replaces_junk_with_a_warning(self, variables, caplog):
        store = VariableProgress("k")
        store.begin(2, "digest")
        store.record(0, sent(0))
        variables["k"] = "{junk"  # written meanwhile by someone else
        store.flush()
        assert json.loads(variables["k"])["sent"] == [[0, 1]]
        assert "replacing Variable 'k'" in caplog.text

    def test_single_message_attempts_merge_their_earliest_start_and_texts(self, variables):
        one, two = VariableProgress("k"), VariableProgress("k")
        for store, started, text in ((one, 2_000_000_000, "a"), (two, 1_900_000_000, "b")):
            store.begin(1, "digest")
            store.record_attempt(started, progress.text_digest(text, "token"))
            store.record(0, {"error": "...", "delivery_unknown": True})
        two.flush()
        one.flush()
        stored = json.loads(variables["k"])
        assert stored["unknown_since"] == 1_900_000_000
        assert sorted(stored["unknown_texts"]) == sorted(progress.text_digest(t, "token") for t in "ab")


class TestWriteAheadClaims:
    """Each block of messages is claimed in the Variable before any of it starts; a later try reads a
    claim without an answer as delivery unknown."""

    @pytest.mark.parametrize(
        ("per_second", "block"),
        [
            pytest.param(285, progress.FLUSH_EVERY, id="default-rate-capped"),
            pytest.param(100, 200, id="two-seconds-of-sending"),
            pytest.param(1, 2, id="slow"),
            pytest.param(0.1, 1, id="slower-than-one-per-block"),
            pytest.param(None, progress.FLUSH_EVERY, id="rate-unknown"),
        ],
    )
    def test_a_block_is_about_flush_seconds_of_sending_and_at_most_flush_every(self, per_second, block):
        assert progress.claim_block(per_second) == block

    def test_the_claim_is_stored_before_claim_returns(self, variables):
        store = VariableProgress("k")
        store.begin(1000, "digest")
        assert store.claim(0, 100) == 200
        assert json.loads(variables["k"])["claimed"] == [[0, 200]]
        assert variables.writes == 1

    def test_a_send_killed_between_claim_and_flush_leaves_its_block_unknown(self, variables):
        killed = VariableProgress("k")
        killed.begin(1000, "digest")
        killed.claim(0, 100)
        for i in range(150):  # sent, recorded in memory only: the worker dies before the next write
            killed.record(i, sent(i))

        retry = VariableProgress("k")
        earlier = retry.begin(1000, "digest")
        assert set(earlier) == set(range(200))
        assert all(r == progress.CLAIMED_EARLIER for r in earlier.values())
        assert "stopped (its worker killed?)" in earlier[0]["error"]

    def test_answers_replace_claims_and_plain_failures_and_releases_give_them_back(self, variables):
        store = VariableProgress("k")
        store.begin(10, "digest")
        assert store.claim(0, 2) == 4
        store.record(0, sent(0))
        store.record(1, {"error": "...", "status_code": 500, "delivery_unknown": True})
        store.record(2, {"error": "CallbellServerError: ...", "status_code": 503})  # nothing went out
        store.release(3)  # never started
        store.flush()
        stored = json.loads(variables["k"])
        assert (stored["sent"], stored["unknown"], "claimed" in stored) == ([[0, 1]], [[1, 2]], False)
        assert set(VariableProgress("k").begin(10, "digest")) == {0, 1}

    def test_claims_skip_what_is_recorded_already(self, variables):
        variables["k"] = valid()  # sent 0-1 and 5, unknown 2
        store = VariableProgress("k")
        store.begin(10, "digest")
        store.claim(0, 5)
        stored = json.loads(variables["k"])
        assert stored["claimed"] == [[3, 5], [6, 10]]
        assert (stored["sent"], stored["unknown"]) == ([[0, 2], [5, 6]], [[2, 3]])

    def test_a_failed_claim_write_releases_the_block(self, variables, monkeypatch):
        store = VariableProgress("k")
        store.begin(4, "digest")
        real_set = variables.set
        monkeypatch.setattr(variables, "set", mock_fail)
        with pytest.raises(OSError, match="API server down"):
            store.claim(0, 1)
        monkeypatch.setattr(variables, "set", real_set)
        store.flush()
        assert "claimed" not in json.loads(variables["k"])

    def test_a_claim_costs_one_write_per_block_not_per_message(self, variables):
        clock = Clock()
        store = VariableProgress("k", clock=clock)
        store.begin(3000, "digest")
        claimed_until = 0
        for i in range(3000):  # as send_spooled does at 285 messages/s: claim, then send, then record
            if i >= claimed_until:
                claimed_until = store.claim(i, 285)
            clock.now += 1 / 285
            store.record(i, sent(i))
        store.flush()
        assert variables.writes == 3000 // progress.FLUSH_EVERY + 1  # every flush rides on a claim

    def test_a_stale_tries_claim_never_turns_a_later_tries_sent_into_unknown(self, variables):
        stale = VariableProgress("k")  # try 1 claims 0-3 and stalls with them in flight
        stale.begin(8, "digest")
        stale.claim(0, 2)
        later = VariableProgress("k", at_least_once=True)  # try 2 reads them as unknown, resends them
        assert all(r["delivery_unknown"] for r in later.begin(8, "digest").values())
        later.claim(0, 2)
        for i in range(4):
            later.record(i, sent(i))  # in memory: written at its next write
        stale.record(0, {"error": "...", "delivery_unknown": True})  # try 1 wakes up, claims on
        stale.claim(4, 2)
        later.flush()  # reads try 1's value: its claims and its unknown
        stored = json.loads(variables["k"])
        assert stored["sent"] == [[0, 4]]  # sent wins over try 1's claims and its unknown
        assert stored["claimed"] == [[4, 8]]

    def test_a_claim_another_try_wrote_over_this_ones_is_not_released(self, variables):
        mine = VariableProgress("k")
        mine.begin(4, "digest")
        mine.claim(0, 1)  # 0-1
        other = VariableProgress("k")
        other.begin(4, "digest")
        other.known.state[1] = progress._UNSENT  # as if it had read the Variable before the claim
        other.claim(1, 1)  # claims 1-2 itself
        mine.record(0, sent(0))
        mine.flush()  # reads the other's claim of 1
        mine.release(1)  # mine did not start 1, but the other try may have
        mine.flush()
        stored = json.loads(variables["k"])
        assert (stored["sent"], stored["claimed"]) == ([[0, 1]], [[1, 3]])


def mock_fail(*args, **kwargs) -> None:
    raise OSError("API server down")
