"""Real Airflow runs: a throwaway AIRFLOW_HOME with SQLite, ``airflow dags test`` in a subprocess,
and Airflow's servers started in a process group of their own and stopped whatever happens."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_callbell.sandbox import CallbellSandbox

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOGICAL_DATE = "2026-01-01"
#: How long a real deployment may take to start, or to get a run as far as a test waits for.
WAIT_SECONDS = 120


@dataclass
class DagRunResult:
    returncode: int
    output: str
    run_id: str
    state: str
    xcoms: list[dict[str, Any]]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        for row in self.xcoms:
            if (row["task_id"], row["key"], row["map_index"]) == (task_id, key, map_index):
                return row["value"]
        raise AssertionError(f"no XCom {key!r} for {task_id}[{map_index}] in {self.xcoms}")


class Airflow:
    """One Airflow installation for the test session: runs DAGs and reads back their XComs."""

    def __init__(self, home: Path, dags_folder: Path = ROOT / "example_dags") -> None:
        self.home = home
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("AIRFLOW_CONN_CALLBELL_DEFAULT", None)

    def cli(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "airflow"), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=check,
        )

    def migrate(self) -> None:
        """Give this home a freshly migrated SQLite database, as ``airflow db migrate`` does.

        The database is a copy of one that this process migrated once (``migrated_database``): a
        migration costs about 7 s of CPU per home, a copy nothing.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database(), self.home / "airflow.db")

    def last_run(self, dag_id: str, also_show: str = "") -> dict[str, Any]:
        """The DAG's last run: ``run_id``, ``state`` and ``xcoms`` (``scripts/read_xcoms.py``, which
        reads the SQLite file without importing Airflow).

        ``also_show`` is added to the failure message, e.g. the output of the run that failed.
        """
        read = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "read_xcoms.py"), dag_id],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert read.returncode == 0, f"read_xcoms.py failed:\n{read.stderr[-3000:]}\n{also_show[-3000:]}"
        found: dict[str, Any] = json.loads(read.stdout.strip().splitlines()[-1])
        return found

    def dags_test(self, dag_id: str, sandbox: CallbellSandbox | None, **env: str) -> DagRunResult:
        """Run ``airflow dags test``; the default connection points at ``sandbox`` unless ``env`` says."""
        if sandbox is not None:
            env = {"AIRFLOW_CONN_CALLBELL_DEFAULT": sandbox.connection_json, **env}
        proc = self.cli("dags", "test", dag_id, LOGICAL_DATE, env=env, check=False)
        found = self.last_run(dag_id, also_show=proc.stderr)
        return DagRunResult(
            proc.returncode, proc.stdout + proc.stderr, found["run_id"], found["state"], found["xcoms"]
        )


@functools.cache
def migrated_database() -> Path:
    """An ``airflow.db`` that ``airflow db migrate`` made, once per process (and so per Airflow line).

    Every home that needs a fresh database gets a copy (``Airflow.migrate``). The copy is what a
    migration of that home would write: the same Airflow, and none of the settings a migration reads
    (the database URL aside, which is the home's own file) differ between the tests' homes. A migrated
    database holds the schema, the default pool and the log file templates; nothing of the home's path
    and nothing encrypted with the home's Fernet key.
    """
    template = Path(tempfile.mkdtemp(prefix="callbell-tests-migrated-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    Airflow(template).cli("db", "migrate")
    return template / "airflow.db"


STARTUP_TIMEOUT = 120  # seconds; both servers answer within ~15 s on a 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def process_group(
    command: list[str], env: dict[str, str], log_path: Path, stop_signal: signal.Signals = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in a process group of its own, its output in ``log_path``; stop the whole group
    when the block ends, however it ends (``stop_signal``, then SIGKILL after 15 s)."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own: children die with it
        )
    try:
        yield proc
    finally:
        kill_group(proc, stop_signal)


@contextmanager
def serve(airflow: Airflow, args: list[str], health_path: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``airflow <args> --port N`` until it answers ``health_path``; yield its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path: Path = airflow.home / f"{args[0]}.log"
    command = [str(BIN / "airflow"), *args, "--port", str(port)]
    with process_group(command, {**airflow.env, **env}, log_path) as proc:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"airflow {args[0]} exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(base_url + health_path, timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"airflow {args[0]} not up in {STARTUP_TIMEOUT} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.25)
        yield base_url


def kill_group(proc: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM) -> None:
    """Stop every process of ``proc``'s group: ``first``, then SIGKILL to what is left after 15 s.

    It waits for the group to be empty, not only for ``proc``: a server's workers may outlive it.
    """
    for sig in (first, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 15
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(proc):
            break
    proc.wait()


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reaps the leader once it exits, so that a zombie does not count
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def api_server(airflow: Airflow, env: dict[str, str] | None = None) -> Iterator[str]:
    """Airflow 3's API server (REST API and UI) where everyone is an admin; yields its base URL.

    ``env`` adds settings, e.g. ``AIRFLOW__CORE__TEST_CONNECTION`` for the Test button.
    """
    args = ["api-server", "--host", "127.0.0.1", "--apps", "core", "--workers", "1"]
    # The simple auth manager makes everyone an admin here; clients still fetch and send a token, as
    # they do against a real deployment.
    admins = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    with serve(airflow, args, "/api/v2/monitor/health", {**admins, **(env or {})}) as base_url:
        yield base_url


@contextmanager
def webserver(airflow: Airflow) -> Iterator[str]:
    """Airflow 2's Flask-AppBuilder web server where anonymous visitors are admins, in its pages and
    its REST API; yields its base URL."""
    config = airflow.home / "webserver_config_public_admin.py"
    config.write_text('AUTH_ROLE_PUBLIC = "Admin"\n')
    args = ["webserver", "--hostname", "127.0.0.1", "--workers", "1"]
    env = {
        "AIRFLOW__WEBSERVER__CONFIG_FILE": str(config),
        "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.default",  # the REST API too
    }
    with serve(airflow, args, "/health", env) as base_url:
        yield base_url


class Services(Airflow):
    """Scheduler, DAG processor and API server sharing one throwaway AIRFLOW_HOME (SQLite).

    Airflow 2.x needs neither: its scheduler runs tasks (SequentialExecutor, the one SQLite allows)
    and DAG-level callbacks (in its DAG file processors) by itself.
    """

    #: What ``running`` starts; ``extra_components`` adds e.g. ``("triggerer",)`` for deferred tasks.
    COMPONENTS: tuple[tuple[str, ...], ...] = (
        (("api-server", "--port", "{api_port}"), ("scheduler",), ("dag-processor",))
        if AIRFLOW_V_3_0_PLUS
        else (("scheduler",),)
    )

    def __init__(
        self,
        home: Path,
        callbell_sandbox: CallbellSandbox,
        dags_folder: Path = ROOT / "example_dags",
        extra_components: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        super().__init__(home, dags_folder)  # the venv's bin first on PATH
        self.api_port = free_port()
        self.components = self.COMPONENTS + extra_components
        self.env.update(
            {
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                # Tasks reach the API server on its non-default port; every component signs and
                # checks the tasks' tokens with the same secret.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.api_port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # Free ports only, so that parallel test runs on one machine do not collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                # Fast loops: a run is picked up and its callback queued within a second or two.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW_CONN_CALLBELL_DEFAULT": callbell_sandbox.connection_json,
            }
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str) -> str:
        """``airflow <args>``'s output; a failure shows its stderr."""
        proc = self.cli(*args, check=False)
        assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
        return proc.stdout

    @contextlib.contextmanager
    def running(self, reserialize: bool = True) -> Iterator[Services]:
        """Start the components; stop them all when the block ends, however it ends.

        ``reserialize=False`` leaves the DAGs to the DAG processor (a test then waits for them through
        the API), which saves a CLI start on a busy machine.
        """
        self.migrate()
        if reserialize:
            self.run("dags", "reserialize")  # the DAG is in the database before anything is triggered
        try:
            for component in self.components:
                args = [arg.format(api_port=self.api_port) for arg in component]
                with open(self.home / f"{args[0]}.log", "wb") as log:
                    self.processes.append(
                        subprocess.Popen(
                            [str(BIN / "airflow"), *args],
                            env=self.env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,  # its own process group, killed as a whole
                        )
                    )
            if AIRFLOW_V_3_0_PLUS:
                self.wait_until_api_answers()  # a task started before it would fail without running
            yield self
        finally:
            self.stop()

    def wait_until_api_answers(self) -> None:
        url = f"http://localhost:{self.api_port}/execution/health"
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            assert all(proc.poll() is None for proc in self.processes), self.logs()
            # A first request may take seconds on a busy machine: abandoned early, it would only be sent again.
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=15) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.5)
        raise AssertionError(f"the API server did not answer {url} within {WAIT_SECONDS} s\n{self.logs()}")

    def stop(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.processes:  # children that outlived their parent, in the same group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}" for path in self.home.glob("*.log")
        )
