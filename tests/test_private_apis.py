"""Every private or undocumented API the provider relies on, in one list, each checked on every run.

A private API can change in any release, without a deprecation and without a note in the changelog;
when one of these does, the test of its entry fails, naming the library and its version, what changed,
and the file of ours to update. Each entry says where we use it by a constant defined below this
table, so that moving code means changing one line per entry; ``test_entry_names_a_file_that_uses_it``
fails while a constant points at a file that no longer uses its API.

=====  ===============================================  ====================  ================================
Line   Private API                                      Used in (constant)    Why
=====  ===============================================  ====================  ================================
both   urllib3                                          ``MAKE_REQUEST``      our pools override it to start
       ``HTTPConnectionPool._make_request(conn,                               each attempt's deadline, retries
       ...)``, which ``urlopen`` calls for every                              included: urllib3's read timeout
       attempt                                                                is per ``recv``, not per attempt
both   urllib3 ``PoolManager.pool_classes_by_scheme``   ``POOL_CLASSES``      how ``DeadlineAdapter`` makes
       (undocumented)                                                         the session's pools (and its
                                                                              proxies') ours
both   an attribute of ours on urllib3's                ``ATTEMPT_ON_CONN``   the watchdog marks the attempt a
       ``HTTPConnection`` (it has no ``__slots__``),                          pooled connection runs, and
       and its ``sock``                                                       shuts down only that attempt's
                                                                              socket
both   urllib3 ``Retry._is_read_error(err)``            ``IS_READ_ERROR``     a read error means the request
                                                                              went out: a send is not repeated
                                                                              (``at_most_once``)
both   urllib3 ``Retry.increment(..., _pool,            ``INCREMENT``         our ``increment`` decides per
       _stacktrace)``, private parameters in that                             cause, then hands every argument
       order                                                                  on by position
both   urllib3 ``Retry`` has none of the names          ``RETRY_NAMES``       ``policy``, ``gate``,
       ``CallbellRetry`` adds                                                 ``_wait_for``, ...: a urllib3
                                                                              name of the same spelling would
                                                                              be shadowed
both   requests ``ConnectionError.args[0]`` is          ``CONNECT_REASON``    a refused connection proves
       urllib3's ``MaxRetryError``, its ``reason`` the                        nothing was sent; without it,
       ``NewConnectionError``                                                 every refused send counts as of
                                                                              unknown fate
both   Jinja ``Template.root_render_func``,             ``ROOT_RENDER_FUNC``  the bulk operator renders each
       ``new_context(shared=True)``,                                          recipient's message over a
       ``Environment.concat`` (native too) and                                ``ChainMap``, not a copy of the
       ``handle_exception``                                                   task's context, as Airflow's
                                                                              templater does
both   CPython's key-sharing instance dicts (PEP 412),  ``KEY_SHARING``       a bulk send's results are such
       an implementation detail                                               dicts: 96 bytes each, not 184
both   ``ThreadingMixIn.process_request_thread``        ``PROCESS_REQUEST``   the sandbox server starts its
       (``socketserver``, undocumented)                                       handler threads itself, to join
                                                                              them on stop
3.x    ``get_first_reschedule_date(context)`` of the    ``FIRST_RESCHEDULE``  when a reply sensor in
       task SDK's ``RuntimeTaskInstance``                                     reschedule mode first started,
       (``airflow.sdk.execution_time``)                                       as Airflow's sensors ask it
3.x    ``ResolveMixin`` from                            ``RESOLVE_MIXIN_3``   parse-time checks skip what
       ``airflow.sdk.definitions._internal.mixins``                           Airflow resolves at run time
                                                                              (``XComArg``, ...)
3.1+   the standard provider's ``HITLOperator``         ``HITL_ATTRIBUTES``   the notifier's "needs your
       attributes, read by duck typing                                        input" message; without them it
       (``hitl_summary_extra``, ...)                                          sends a plain task message
3.1+   ``airflow.sdk.log.redact`` (re-exported, not in  ``REDACT_3``          the notifier masks its alerts as
       ``__all__``)                                                           Airflow's logs are masked (and
                                                                              tests prove the token masked)
2.x    ``_orig_start_date(dag_id, task_id, run_id,      ``ORIG_START_DATE``   the same, on Airflow 2, whose
       map_index, try_number)`` of                                            own sensors call it
       ``airflow.sensors.base``
2.x    ``airflow.utils.mixins.ResolveMixin``            ``RESOLVE_MIXIN_2``   the same, on Airflow 2
2.x    ``airflow.utils.log.secrets_masker.redact``      ``REDACT_2``          the same, on Airflow 2
both   ``tempfile.SpooledTemporaryFile._rolled``        ``SPOOL_ROLLED``      tests only: proving that the
                                                                              bulk spool moves to a file
both   requests ``HTTPAdapter._pool_maxsize``           ``POOL_MAXSIZE``      tests only: proving a connection
                                                                              per bulk worker
=====  ===============================================  ====================  ================================

An entry of one Airflow line is skipped on the other, with the reason. Airflow 3.0 takes another path
for ``redact`` (``airflow.sdk.execution_time.secrets_masker``), which no CI line runs.
"""

from __future__ import annotations

import inspect
import json
import platform
import re
import socket
import tracemalloc
from collections import ChainMap
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS, AIRFLOW_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable

# Where each entry is used: the file, one constant per entry. The urllib3 overrides live in one file,
# transport/_urllib3.py; the watchdog (transport/deadline.py) marks and shuts down their connections.
MAKE_REQUEST = "airflow_provider_callbell/transport/_urllib3.py"
POOL_CLASSES = "airflow_provider_callbell/transport/_urllib3.py"
ATTEMPT_ON_CONN = "airflow_provider_callbell/transport/deadline.py"
IS_READ_ERROR = "airflow_provider_callbell/transport/_urllib3.py"
INCREMENT = "airflow_provider_callbell/transport/_urllib3.py"
RETRY_NAMES = "airflow_provider_callbell/transport/_urllib3.py"
CONNECT_REASON = "airflow_provider_callbell/transport/sync.py"
ROOT_RENDER_FUNC = "airflow_provider_callbell/recipients.py"
KEY_SHARING = "airflow_provider_callbell/bulk.py"
PROCESS_REQUEST = "airflow_provider_callbell/sandbox/server.py"
FIRST_RESCHEDULE = "airflow_provider_callbell/version_compat.py"
RESOLVE_MIXIN_3 = "airflow_provider_callbell/version_compat.py"
HITL_ATTRIBUTES = "airflow_provider_callbell/callback_events.py"
REDACT_3 = "airflow_provider_callbell/version_compat.py"
ORIG_START_DATE = "airflow_provider_callbell/version_compat.py"
RESOLVE_MIXIN_2 = "airflow_provider_callbell/version_compat.py"
REDACT_2 = "airflow_provider_callbell/version_compat.py"
SPOOL_ROLLED = "tests/test_bulk.py"
POOL_MAXSIZE = "tests/hooks/test_callbell_bulk.py"

ROOT = Path(__file__).resolve().parents[1]


_CPYTHON = platform.python_implementation() == "CPython"


def _airflow_only(line: str, present: bool) -> str | None:
    """Why an entry of one Airflow line is skipped on another, or ``None`` on its own line."""
    return None if present else f"it exists on Airflow {line} only; this is Airflow {AIRFLOW_VERSION}"


@dataclass(frozen=True)
class PrivateApi:
    """One private API: whose, what, where we use it and why, and how to check it is still there.

    :param dist: the distribution that ships it (its version goes into the failure message), or
        ``"Python"`` for the standard library and the interpreter.
    :param constant: the name of the constant above that holds the file that uses it.
    :param needle: text that file holds where it uses the API.
    :param check: raises (an ``AssertionError`` saying what changed, or the ``ImportError`` or
        ``AttributeError`` of a removed name) when the API is gone or changed.
    :param skip: why the entry does not apply here (another Airflow line, another interpreter).
    """

    id: str
    dist: str
    api: str
    constant: str
    needle: str
    why: str
    check: Callable[[], None]
    skip: str | None = None

    @property
    def used_in(self) -> str:
        path: str = globals()[self.constant]
        return path


def _params(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


# -- The checks, one per entry -----------------------------------------------------------------------


def _make_request() -> None:
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    for pool in (HTTPConnectionPool, HTTPSConnectionPool):
        assert _params(pool._make_request)[:2] == ["self", "conn"], (
            f"{pool.__name__}._make_request takes {_params(pool._make_request)}, no longer the connection first"
        )
    assert re.search(r"self\._make_request\(\s*conn\b", inspect.getsource(HTTPConnectionPool.urlopen)), (
        "HTTPConnectionPool.urlopen no longer calls self._make_request(conn, ...) for each attempt"
    )


def _pool_classes() -> None:
    from urllib3.poolmanager import PoolManager

    manager = PoolManager()
    assert set(manager.pool_classes_by_scheme) >= {"http", "https"}
    assert "pool_classes_by_scheme" in inspect.getsource(PoolManager._new_pool), (
        "PoolManager._new_pool no longer picks its pool class from pool_classes_by_scheme"
    )


def _attempt_on_conn() -> None:
    from urllib3.connection import HTTPConnection

    conn = HTTPConnection("localhost", 80)
    conn._callbell_attempt = object()  # what the watchdog sets
    assert conn.sock is None, "HTTPConnection has no 'sock' (None before connecting) any more"


def _is_read_error() -> None:
    from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError
    from urllib3.util.retry import Retry

    assert _params(Retry._is_read_error) == ["self", "err"], f"it takes {_params(Retry._is_read_error)}"
    retry = Retry()
    assert retry._is_read_error(ReadTimeoutError(None, "/", "read timed out"))
    assert retry._is_read_error(ProtocolError("Connection aborted."))
    assert not retry._is_read_error(ConnectTimeoutError("connect timed out"))


def _increment() -> None:
    from urllib3.util.retry import Retry

    expected = ["self", "method", "url", "response", "error", "_pool", "_stacktrace"]
    assert _params(Retry.increment) == expected, f"it takes {_params(Retry.increment)}, not {expected}"


def _retry_names() -> None:
    from urllib3.util.retry import Retry

    from airflow_provider_callbell.retry import RetryPolicy
    from airflow_provider_callbell.transport._urllib3 import CallbellRetry

    theirs = set(vars(Retry())) | set(dir(Retry))
    attributes = set(vars(CallbellRetry(policy=RetryPolicy(), log=print))) - set(vars(Retry()))
    methods = {name for name in vars(CallbellRetry) if not name.startswith("__")}
    overridden = {"new", "is_retry", "get_backoff_time", "get_retry_after", "sleep", "increment"}
    clashes = sorted(((attributes | methods) - overridden) & theirs)
    assert not clashes, f"Retry now has {clashes}, which CallbellRetry uses for its own"


def _connect_reason() -> None:
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    # Closed: nothing listens on the port, so connecting is refused at once.
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    with pytest.raises(requests.ConnectionError) as excinfo:
        session.get(f"http://127.0.0.1:{port}/", timeout=5)
    cause = excinfo.value.args[0] if excinfo.value.args else None
    assert isinstance(cause, MaxRetryError), f"ConnectionError.args[0] is {cause!r}, not a MaxRetryError"
    assert isinstance(cause.reason, NewConnectionError), f"its reason is {cause.reason!r}"


def _root_render_func() -> None:
    from jinja2 import Environment
    from jinja2.nativetypes import NativeEnvironment

    for env, expected in ((Environment(), "2"), (NativeEnvironment(), 2)):
        template = env.from_string("{{ a + 1 }}")
        context = template.new_context(ChainMap({"a": 1}, template.globals), shared=True)
        rendered = env.concat(template.root_render_func(context))
        assert rendered == expected, f"{type(env).__name__} rendered {rendered!r}, not {expected!r}"
    template = Environment().from_string("{{ 1 // 0 }}")
    try:
        "".join(template.root_render_func(template.new_context({}, shared=True)))
    except ZeroDivisionError:
        with pytest.raises(ZeroDivisionError):
            template.environment.handle_exception()
    else:
        raise AssertionError("root_render_func did not raise the template's error")


def _key_sharing() -> None:
    from airflow_provider_callbell.bulk import compact

    message = json.loads('{"uuid": "adf3d1216d4c4dcd908199d6700f2381", "status": "enqueued"}')
    shared, plain = _bytes_per_call(lambda: compact(message)), _bytes_per_call(lambda: dict(message))
    assert shared < 0.75 * plain, (
        f"a compact result takes {shared:.0f} bytes, a plain dict {plain:.0f}: instance dicts no longer "
        "share their keys"
    )


def _bytes_per_call(make: Callable[[], object], calls: int = 1000) -> float:
    """The memory each result of ``make`` holds, measured by ``tracemalloc`` (``sys.getsizeof`` is
    wrong for key-sharing dicts: it counts the keys they share)."""
    make()  # the first instances of a class may be larger
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make() for _ in range(calls)]
        return (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()


def _process_request() -> None:
    import socketserver

    params = _params(socketserver.ThreadingMixIn.process_request_thread)
    assert params == ["self", "request", "client_address"], f"it takes {params}"


def _first_reschedule() -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    assert _params(RuntimeTaskInstance.get_first_reschedule_date) == ["self", "context"]


def _resolve_mixin_3() -> None:
    from airflow.sdk import XComArg
    from airflow.sdk.definitions._internal.mixins import ResolveMixin

    assert issubclass(XComArg, ResolveMixin), "XComArg is no longer a ResolveMixin"


def _hitl_attributes() -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator

    task = HITLOperator(task_id="ask", subject="Ship it?", options=["yes", "no"], body="the body")
    read = {name: getattr(task, name) for name in ("subject", "body", "options", "multiple", "defaults")}
    expected = {"subject": "Ship it?", "body": "the body", "options": ["yes", "no"], "multiple": False}
    assert read == {**expected, "defaults": None}
    assert isinstance(task.hitl_summary_extra, dict)
    assert _params(task.generate_link_to_ui_from_context)[:1] == ["context"]
    assert 'hitl_summary_extra["timeout_datetime"]' in inspect.getsource(HITLOperator.execute), (
        "HITLOperator.execute no longer records hitl_summary_extra['timeout_datetime']"
    )


def _redact_3() -> None:
    from airflow.sdk.log import redact

    assert _params(redact)[:2] == ["value", "name"]


def _orig_start_date() -> None:
    from airflow.sensors.base import _orig_start_date

    expected = ["dag_id", "task_id", "run_id", "map_index", "try_number"]
    assert _params(_orig_start_date)[:5] == expected, f"it takes {_params(_orig_start_date)}"


def _resolve_mixin_2() -> None:
    from airflow.models.xcom_arg import XComArg
    from airflow.utils.mixins import ResolveMixin

    assert issubclass(XComArg, ResolveMixin), "XComArg is no longer a ResolveMixin"


def _redact_2() -> None:
    from airflow.utils.log.secrets_masker import redact

    assert _params(redact)[:2] == ["value", "name"]


def _spool_rolled() -> None:
    import tempfile

    with tempfile.SpooledTemporaryFile(max_size=4) as spooled:
        assert spooled._rolled is False
        spooled.write(b"12345")
        assert spooled._rolled is True


def _pool_maxsize() -> None:
    from requests.adapters import HTTPAdapter

    assert HTTPAdapter(pool_maxsize=7)._pool_maxsize == 7


ENTRIES = [
    PrivateApi(
        "urllib3-make-request",
        "urllib3",
        "HTTPConnectionPool._make_request",
        "MAKE_REQUEST",
        "_make_request",
        "each attempt's deadline starts there",
        _make_request,
    ),
    PrivateApi(
        "urllib3-pool-classes",
        "urllib3",
        "PoolManager.pool_classes_by_scheme",
        "POOL_CLASSES",
        "pool_classes_by_scheme",
        "the session's pools are ours through it",
        _pool_classes,
    ),
    PrivateApi(
        "urllib3-attempt-on-connection",
        "urllib3",
        "HTTPConnection attributes (ours, and sock)",
        "ATTEMPT_ON_CONN",
        "_callbell_attempt",
        "the watchdog marks the attempt a connection runs",
        _attempt_on_conn,
    ),
    PrivateApi(
        "urllib3-is-read-error",
        "urllib3",
        "Retry._is_read_error",
        "IS_READ_ERROR",
        "_is_read_error",
        "a send whose request went out is never repeated",
        _is_read_error,
    ),
    PrivateApi(
        "urllib3-increment",
        "urllib3",
        "Retry.increment(..., _pool, _stacktrace)",
        "INCREMENT",
        "_stacktrace",
        "our increment hands every argument on by position",
        _increment,
    ),
    PrivateApi(
        "urllib3-retry-names",
        "urllib3",
        "Retry's attribute names",
        "RETRY_NAMES",
        "class CallbellRetry(Retry)",
        "CallbellRetry's own names must not shadow urllib3's",
        _retry_names,
    ),
    PrivateApi(
        "requests-connect-reason",
        "requests",
        "ConnectionError.args[0].reason",
        "CONNECT_REASON",
        "err.args[0]",
        "a refused connection proves that nothing was sent",
        _connect_reason,
    ),
    PrivateApi(
        "jinja-root-render-func",
        "Jinja2",
        "Template.root_render_func, Environment.concat and handle_exception",
        "ROOT_RENDER_FUNC",
        "root_render_func",
        "per-recipient rendering without copying the task's context",
        _root_render_func,
    ),
    PrivateApi(
        "cpython-key-sharing-dicts",
        "Python",
        "key-sharing instance dicts (PEP 412)",
        "KEY_SHARING",
        "__dict__",
        "a bulk send's results take half the memory",
        _key_sharing,
        skip=None if _CPYTHON else "key-sharing dicts are CPython's",
    ),
    PrivateApi(
        "socketserver-process-request-thread",
        "Python",
        "socketserver.ThreadingMixIn.process_request_thread",
        "PROCESS_REQUEST",
        "process_request_thread",
        "the sandbox joins its handler threads on stop",
        _process_request,
    ),
    PrivateApi(
        "airflow-first-reschedule-date",
        "apache-airflow-task-sdk",
        "RuntimeTaskInstance.get_first_reschedule_date",
        "FIRST_RESCHEDULE",
        "get_first_reschedule_date",
        "a rescheduled reply sensor's first start",
        _first_reschedule,
        skip=_airflow_only("3.x", AIRFLOW_V_3_0_PLUS),
    ),
    PrivateApi(
        "airflow-resolve-mixin-3",
        "apache-airflow-task-sdk",
        "airflow.sdk.definitions._internal.mixins.ResolveMixin",
        "RESOLVE_MIXIN_3",
        "airflow.sdk.definitions._internal.mixins",
        "parse-time checks skip what Airflow resolves at run time",
        _resolve_mixin_3,
        skip=_airflow_only("3.x", AIRFLOW_V_3_0_PLUS),
    ),
    PrivateApi(
        "airflow-hitl-attributes",
        "apache-airflow-providers-standard",
        "HITLOperator attributes read by duck typing",
        "HITL_ATTRIBUTES",
        "hitl_summary_extra",
        "the notifier's 'needs your input' message",
        _hitl_attributes,
        skip=_airflow_only("3.1+", AIRFLOW_V_3_1_PLUS),
    ),
    PrivateApi(
        "airflow-redact-3",
        "apache-airflow-task-sdk",
        "airflow.sdk.log.redact",
        "REDACT_3",
        "from airflow.sdk.log import redact",
        "the notifier's alerts are masked as Airflow's logs are",
        _redact_3,
        skip=_airflow_only("3.1+", AIRFLOW_V_3_1_PLUS),
    ),
    PrivateApi(
        "airflow-orig-start-date",
        "apache-airflow",
        "airflow.sensors.base._orig_start_date",
        "ORIG_START_DATE",
        "_orig_start_date",
        "a rescheduled reply sensor's first start",
        _orig_start_date,
        skip=_airflow_only("2.x", not AIRFLOW_V_3_0_PLUS),
    ),
    PrivateApi(
        "airflow-resolve-mixin-2",
        "apache-airflow",
        "airflow.utils.mixins.ResolveMixin",
        "RESOLVE_MIXIN_2",
        "airflow.utils.mixins",
        "parse-time checks skip what Airflow resolves at run time",
        _resolve_mixin_2,
        skip=_airflow_only("2.x", not AIRFLOW_V_3_0_PLUS),
    ),
    PrivateApi(
        "airflow-redact-2",
        "apache-airflow",
        "airflow.utils.log.secrets_masker.redact",
        "REDACT_2",
        "from airflow.utils.log.secrets_masker import redact",
        "the notifier's alerts are masked as Airflow's logs are",
        _redact_2,
        skip=_airflow_only("2.x", not AIRFLOW_V_3_0_PLUS),
    ),
    PrivateApi(
        "tempfile-spool-rolled",
        "Python",
        "tempfile.SpooledTemporaryFile._rolled",
        "SPOOL_ROLLED",
        "._rolled",
        "tests only: the spool moves to a file",
        _spool_rolled,
    ),
    PrivateApi(
        "requests-pool-maxsize",
        "requests",
        "HTTPAdapter._pool_maxsize",
        "POOL_MAXSIZE",
        "._pool_maxsize",
        "tests only: a connection per bulk worker",
        _pool_maxsize,
    ),
]


def _dist_version(dist: str) -> str:
    if dist == "Python":
        return f"{platform.python_implementation()} {platform.python_version()}"
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return f"{dist} (not installed)"


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(entry, id=entry.id, marks=[pytest.mark.skip(reason=entry.skip)] if entry.skip else [])
        for entry in ENTRIES
    ],
)
def test_private_api_is_still_there(entry: PrivateApi) -> None:
    try:
        entry.check()
    except Exception as err:  # an ImportError, an AttributeError or what the check found
        pytest.fail(
            f"{_dist_version(entry.dist)} removed or changed {entry.api} ({type(err).__name__}: {err}); "
            f"update {entry.used_in}, which relies on it ({entry.why}), and its entry in "
            "tests/test_private_apis.py",
            pytrace=False,
        )


@pytest.mark.parametrize("entry", [pytest.param(entry, id=entry.id) for entry in ENTRIES])
def test_entry_names_a_file_that_uses_it(entry: PrivateApi) -> None:
    path = ROOT / entry.used_in
    assert path.is_file(), (
        f"{entry.used_in} is gone: point {entry.constant} at the file that uses {entry.api}"
    )
    assert entry.needle in path.read_text(), (
        f"{entry.used_in} no longer uses {entry.api} ({entry.needle!r}): point {entry.constant} at the file "
        "that does, or drop the entry if nothing does any more"
    )


def test_the_table_lists_every_entry_once() -> None:
    rows = [line for line in (__doc__ or "").splitlines() if re.match(r"(both|[23]\.)", line)]
    for entry in ENTRIES:
        assert sum(f"``{entry.constant}``" in row for row in rows) == 1, (
            f"the table in the module docstring must name {entry.constant} ({entry.api}) in one row"
        )
    assert len(rows) == len(ENTRIES), "the table has a row that no entry checks"
