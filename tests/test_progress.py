"""The bulk send's progress in an Airflow Variable: key, batching, format, cleanup."""

from __future__ import annotations

import json

import pytest

from airflow_provider_callbell import progress
from airflow_provider_callbell.progress import VariableProgress, progress_key
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
