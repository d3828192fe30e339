from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers import SEND_URL, UUID, set_connection
from tests.integration.helpers import Airflow, api_server
from tests.redis_server import MISSING, RedisServer

if TYPE_CHECKING:
    from collections.abc import Iterator

# Airflow reads AIRFLOW_HOME when it is first imported, which happens after this file is loaded: give
# the in-process tests a throwaway home, so that no config, SQLite file or log lands in ~/airflow.
# The integration tests run `airflow` in subprocesses with homes of their own.
_airflow_home = tempfile.mkdtemp(prefix="callbell-tests-airflow-home-")
atexit.register(shutil.rmtree, _airflow_home, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _airflow_home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

pytest_plugins = ["airflow_provider_callbell.sandbox.pytest_plugin"]


#: The tests left out of a plain run, each with the option that runs them: the browser tests need
#: Chromium (`make test-browser`), the Celery tests Redis, PostgreSQL and a minute to start a deployment
#: (`make test-celery`).
OPT_IN_MARKERS = {"browser": "--browser", "celery": "--celery"}


def pytest_addoption(parser: pytest.Parser) -> None:
    for marker, option in OPT_IN_MARKERS.items():
        parser.addoption(
            option, action="store_true", help=f"run the tests marked {marker} (make test-{marker})"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the opt-in tests out of a run that did not ask for them.

    The tests that share the session's API server (``airflow_api_server``) run last, one after the
    other: it starts for the first of them and stops with the session, so no other test's Airflow
    runs beside it.
    """
    items.sort(key=lambda item: "airflow_api_server" in getattr(item, "fixturenames", ()))  # stable
    left_out = {marker for marker, option in OPT_IN_MARKERS.items() if not config.getoption(option)}
    deselected = [item for item in items if any(item.get_closest_marker(m) for m in left_out)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture
def callbell_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default connection, with the token only (base URL and extras left to their defaults)."""
    set_connection(monkeypatch)


@pytest.fixture
def send_ok(requests_mock, callbell_conn):
    """Callbell accepting every send, as its docs show."""
    return requests_mock.post(SEND_URL, json={"message": {"uuid": UUID, "status": "enqueued"}})


@pytest.fixture
def async_answers(monkeypatch):
    """Answer the hook's httpx requests from a list of ``httpx.Response`` or exceptions, in order."""
    import httpx

    answers: list[httpx.Response | Exception] = []
    requests_seen: list[httpx.Request] = []
    real_client = httpx.AsyncClient

    def handler(request: httpx.Request) -> httpx.Response:
        requests_seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        # Served as a stream, as a real server's answer is: httpx sets ``elapsed`` when it is read.
        return httpx.Response(
            answer.status_code, headers=answer.headers, stream=httpx.ByteStream(answer.content)
        )

    monkeypatch.setattr(
        httpx, "AsyncClient", lambda **kwargs: real_client(transport=httpx.MockTransport(handler), **kwargs)
    )
    return answers, requests_seen


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    """The session's throwaway Airflow (SQLite home, a migrated database), for real Airflow runs."""
    instance = Airflow(tmp_path_factory.mktemp("airflow_home"))
    instance.migrate()
    return instance


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server for the session, stopped at its end, even after Ctrl-C."""
    if shutil.which("redis-server") is None:
        pytest.skip(MISSING)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's redis, emptied, and this process's shared storages forgotten, for one test."""
    from airflow_provider_callbell import ratelimit

    redis_server.client().flushall()
    monkeypatch.setattr(ratelimit, "_storages", {})
    return redis_server.url


@pytest.fixture(scope="session")
def airflow_api_server(airflow: Airflow) -> Iterator[str]:
    """Airflow 3's API server on the session's Airflow, started once for every test that needs one.

    Its base URL. The Test button is enabled (``AIRFLOW__CORE__TEST_CONNECTION``), which the tests
    that do not press it ignore. Starting it takes 15-30 s on a 2-core machine: once, not per test.
    """
    if not AIRFLOW_V_3_0_PLUS:
        pytest.skip("the API server is Airflow 3's")
    with api_server(airflow, {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}) as base_url:
        yield base_url
