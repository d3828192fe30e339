"""The rate gate on a fake clock: spacing, the shared pause, and a reservation overtaken by a pause."""

from __future__ import annotations

import pytest

from airflow_provider_callbell.exceptions import CallbellError, CallbellValidationError
from airflow_provider_callbell.ratelimit import RateGate
from tests.helpers import Waits


@pytest.fixture
def waits():
    return Waits()


def gate(waits: Waits) -> RateGate:
    return RateGate(clock=waits.clock, sleep=waits.sleep)


class TestRateGate:
    def test_no_spacing_outside_a_bulk_send(self, waits):
        g = gate(waits)
        for _ in range(3):
            g.acquire()
        assert waits == []
        assert g.max_rps is None

    def test_spaces_starts_one_interval_apart(self, waits):
        g = gate(waits)
        starts = []
        with g.limited(4):
            assert g.max_rps == 4
            for _ in range(3):
                g.acquire()
                starts.append(waits.now)
        assert starts == [1000.0, 1000.25, 1000.5]
        assert g.max_rps is None

    def test_a_request_late_for_its_slot_is_not_made_up_for_by_a_burst(self, waits):
        g = gate(waits)
        with g.limited(10):
            g.acquire()
            waits.now += 5  # nothing sent for a while
            g.acquire()
            g.acquire()
        assert waits == [pytest.approx(0.1)]

    def test_pause_holds_the_next_request(self, waits):
        g = gate(waits)
        g.pause(2)
        g.acquire()
        assert waits == [2.0]

    def test_overlapping_pauses_end_with_the_latest(self, waits):
        g = gate(waits)
        g.pause(5)
        g.pause(2)
        g.acquire()
        assert waits == [5.0]

    def test_a_pause_during_the_wait_for_a_slot_queues_the_request_behind_it(self, waits):
        g = gate(waits)

        def sleep_while_another_worker_gets_a_429(seconds: float) -> None:
            Waits.sleep(waits, seconds)
            if len(waits) == 1:
                g.pause(3)  # Retry-After: 3, met by another worker while this one waited

        g._sleep = sleep_while_another_worker_gets_a_429
        with g.limited(1):
            g.acquire()  # starts at once
            g.acquire()  # reserves +1 s, during which the pause begins
        assert waits == [1.0, 3.0]
        assert waits.now == 1004.0  # the pause's end, not the reserved slot inside it

    @pytest.mark.parametrize(
        "max_rps",
        [
            pytest.param(0, id="zero"),
            pytest.param(-5, id="negative"),
            pytest.param("10", id="string"),
            pytest.param(True, id="bool"),
            pytest.param(float("inf"), id="infinite"),
            pytest.param(float("nan"), id="nan"),
            pytest.param(1e-300, id="tiny"),
            pytest.param(0.09, id="below-0.1"),
            pytest.param(10_001, id="above-10000"),
            pytest.param(10**400, id="huge-int"),
        ],
    )
    def test_max_rps_must_be_finite_and_sensible(self, waits, max_rps):
        with (
            pytest.raises(
                CallbellValidationError, match=r"max_rps must be a number of requests per second from 0\.1"
            ),
            gate(waits).limited(max_rps),
        ):
            pass

    def test_one_bulk_send_at_a_time(self, waits):
        g = gate(waits)
        with g.limited(10), pytest.raises(CallbellError, match="already running"), g.limited(10):
            pass
        with g.limited(20):  # released after the first
            assert g.max_rps == 20
