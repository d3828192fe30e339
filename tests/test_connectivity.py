"""No connection is not a wait: what the transport calls a failure to connect, the grace rule, one log line per retry."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
import urllib3

from airflow_provider_callbell import connectivity
from airflow_provider_callbell.connectivity import (
    NEVER_CONNECTED_SECONDS,
    NEVER_CONNECTED_TRIES,
    ConnectWatch,
)
from airflow_provider_callbell.exceptions import (
    AirflowAPIError,
    CallbellConnectError,
    CallbellNoAnswerError,
    CallbellServerError,
    CallbellTimeoutError,
    error_event,
    error_from_event,
)
from airflow_provider_callbell.hooks.callbell import CallbellHook
from tests.helpers import UUID, set_connection


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def nothing_listens(monkeypatch: pytest.MonkeyPatch) -> str:
    """The default connection pointing at a closed port, retries off; returns ``host:port``."""
    port = closed_port()
    set_connection(monkeypatch, host=f"http://127.0.0.1:{port}/v1", extra={"max_retries": 0})
    return f"127.0.0.1:{port}"


def refused(host: str = "127.0.0.1:9") -> CallbellConnectError:
    return CallbellConnectError(
        f"no connection to {host} (ConnectError: refused)", host=host, endpoint="GET /x"
    )


class TestTransport:
    def test_a_refused_connection_is_a_connect_error_naming_the_host(self, nothing_listens: str) -> None:
        with pytest.raises(CallbellConnectError) as sync_error:
            CallbellHook().get_message_status(UUID)

        async def ask() -> None:
            hook = CallbellHook()
            try:
                await hook.aget_message_status(UUID)
            finally:
                await hook.aclose()

        with pytest.raises(CallbellConnectError) as async_error:
            asyncio.run(ask())
        for err in (sync_error.value, async_error.value):
            assert err.host == nothing_listens
            assert nothing_listens in str(err)
            assert err.maybe_acted_on is False  # nothing can have been sent
            assert err.is_transient
            assert not isinstance(err, CallbellTimeoutError)  # urllib3's NewConnectionError is a TimeoutError

    def test_an_unknown_host_name_is_a_connect_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        set_connection(monkeypatch, host="https://callbell-sandbox.invalid:8080/v1", extra={"max_retries": 0})
        with pytest.raises(CallbellConnectError, match=r"callbell-sandbox\.invalid:8080"):
            CallbellHook().get_message_status(UUID)

    def test_the_error_survives_a_trigger_event(self) -> None:
        rebuilt = error_from_event(error_event(refused()))
        assert type(rebuilt) is CallbellConnectError
        assert "127.0.0.1:9" in str(rebuilt)


class TestGrace:
    def test_fails_after_both_the_tries_and_the_seconds(self) -> None:
        watch = ConnectWatch()
        assert watch.saw(refused(), now=1000.0) is None
        for n in range(2, NEVER_CONNECTED_TRIES + 3):  # many quick tries: not yet a minute
            assert watch.saw(refused(), now=1000.0 + n) is None
        failure = watch.saw(refused(), now=1000.0 + NEVER_CONNECTED_SECONDS)
        assert isinstance(failure, CallbellConnectError)
        assert "127.0.0.1:9" in str(failure)
        assert "is the Callbell sandbox running" in str(failure)
        slow = ConnectWatch()  # a minute passes in two slow tries: not yet three tries
        assert slow.saw(refused(), now=0.0) is None
        assert slow.saw(refused(), now=10 * NEVER_CONNECTED_SECONDS) is None
        assert slow.saw(refused(), now=11 * NEVER_CONNECTED_SECONDS) is not None

    @pytest.mark.parametrize(
        "answer",
        [None, CallbellServerError("busy", status_code=503)],
        ids=["an-answer", "an-error-status"],
    )
    def test_once_connected_failures_stay_transient(self, answer: Any) -> None:
        watch = ConnectWatch()
        watch.saw(refused(), now=0.0)
        watch.saw(answer, now=1.0)
        assert watch.connected
        for n in range(100):
            assert watch.saw(refused(), now=2.0 + n * NEVER_CONNECTED_SECONDS) is None

    def test_a_timeout_counts_neither_way(self) -> None:
        watch = ConnectWatch()
        for n in range(10):
            assert watch.saw(CallbellTimeoutError("slow"), now=n * NEVER_CONNECTED_SECONDS) is None
            assert watch.saw(CallbellNoAnswerError("reset"), now=n * NEVER_CONNECTED_SECONDS) is None
        assert (watch.connected, watch.failures) == (False, 0)

    @pytest.mark.parametrize(
        "error",
        [
            AirflowAPIError("refused", status_code=403),
            AirflowAPIError("Airflow's API server did not answer"),
        ],
        ids=["airflow-answered", "airflow-down"],
    )
    def test_an_airflow_api_error_says_nothing_about_callbell(self, error: AirflowAPIError) -> None:
        """The HITL bridge's trigger polls Airflow too; Airflow answering is not Callbell answering."""
        watch = ConnectWatch()
        watch.saw(refused(), now=0.0)
        assert watch.saw(error, now=1.0) is None
        assert (watch.connected, watch.failures) == (False, 1)
        watch.saw(refused(), now=2.0)
        assert watch.saw(refused(), now=NEVER_CONNECTED_SECONDS) is not None  # still never connected

    @pytest.mark.parametrize(
        "state",
        [None, "junk", {"connected": "yes", "failures": "3", "first_failure": "now"}, {"failures": True}],
    )
    def test_an_unreadable_state_is_a_fresh_watch(self, state: Any) -> None:
        assert ConnectWatch.from_state(state) == ConnectWatch()

    def test_state_round_trip(self) -> None:
        watch = ConnectWatch()
        watch.saw(refused(), now=5.0)
        assert ConnectWatch.from_state(watch.to_state()) == watch


class TestOneLinePerRetry:
    @pytest.fixture
    def urllib3_warnings(self) -> Any:
        records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = records.append  # type: ignore[method-assign]
        logger = logging.getLogger("urllib3.connectionpool")
        logger.addHandler(handler)
        try:
            yield records
        finally:
            logger.removeHandler(handler)

    def test_each_retry_is_logged_once_with_its_cause(
        self, monkeypatch: pytest.MonkeyPatch, urllib3_warnings: list[logging.LogRecord]
    ) -> None:
        port = closed_port()
        set_connection(
            monkeypatch, host=f"http://127.0.0.1:{port}/v1", extra={"max_retries": 2, "retry_backoff": 0.01}
        )
        hook = CallbellHook()
        lines: list[str] = []
        monkeypatch.setattr(hook.log, "warning", lambda msg, *args, **_: lines.append(msg % args))
        with pytest.raises(CallbellConnectError):
            hook.get_message_status(UUID)
        retries = [line for line in lines if "retry" in line]
        assert len(retries) == 2
        assert all("Connection refused" in line and f"port={port}" in line for line in retries)
        assert [r.getMessage() for r in urllib3_warnings] == []  # urllib3's own copy is dropped

    def test_other_clients_keep_urllib3s_warning(self, urllib3_warnings: list[logging.LogRecord]) -> None:
        from airflow_provider_callbell.transport import _urllib3

        _urllib3._silence_own_retry_warnings()
        with (
            urllib3.PoolManager(retries=urllib3.Retry(1, backoff_factor=0)) as pool,
            pytest.raises(urllib3.exceptions.MaxRetryError),
        ):
            pool.request("GET", f"http://127.0.0.1:{closed_port()}/")
        assert [r.getMessage().startswith("Retrying (") for r in urllib3_warnings] == [True]


def test_the_grace_is_documented_as_coded() -> None:
    assert (connectivity.NEVER_CONNECTED_TRIES, connectivity.NEVER_CONNECTED_SECONDS) == (3, 60.0)
