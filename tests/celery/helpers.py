"""A real CeleryExecutor deployment for ``make test-celery``: Redis, PostgreSQL, Airflow 3's API server,
scheduler, DAG processor and triggerer, and two Celery workers, each in a process group of its own and
all stopped when the block ends, however it ends (an assertion, an error, Ctrl-C).

It is Airflow's official docker-compose set-up without the containers: every process is a child of the
test, on loopback, on free ports, with its home, logs and databases in one throwaway directory. Redis and
PostgreSQL are the distribution's (``scripts/install_celery_services.sh`` installs them with apt).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import requests

from tests.integration.helpers import BIN, ROOT, Airflow, free_port, process_group
from tests.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DAGS = Path(__file__).resolve().parent / "dags"
#: The two workers: each listens on the default queue and on a queue of its own (a task sent there runs
#: on that worker), and names the machine it runs on ``<name>.test`` (see ``worker_hostname``).
WORKERS = ("worker_a", "worker_b")
#: Seconds without a heartbeat after which the scheduler fails a running task instance (and retries
#: it): Airflow's default is 300; a task's supervisor beats every few seconds.
HEARTBEAT_TIMEOUT = 20
STARTUP_TIMEOUT = 180


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers: each names itself, as two machines would.

    On one machine both workers would otherwise record the same host name on their task instances.
    """
    return os.environ["CALLBELL_TEST_WORKER_HOSTNAME"]


def wait_until(
    ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT, log: Path | None = None
) -> None:
    """Poll ``ready`` until it is true; fail the test naming ``what`` (and the log's tail) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"{what} not ready in {timeout:.0f} s\n{tail}")
        time.sleep(0.5)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(
            f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin: run scripts/install_celery_services.sh"
        )
    return found[-1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields Airflow's SQLAlchemy URL.

    PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` user and its
    commands run through ``runuser``. Its directory is a temporary one of its own (pytest's are private
    to the user running the tests).
    """
    as_owner: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    datadir = Path(tempfile.mkdtemp(prefix="callbell-celery-postgres-"))
    try:
        if as_owner:
            shutil.chown(datadir, "postgres", "postgres")
        subprocess.run(
            [*as_owner, _postgres_bin("initdb"), "-D", str(datadir / "data"), "-U", "airflow", "-A", "trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        command = [
            *as_owner,
            _postgres_bin("postgres"),
            "-D",
            str(datadir / "data"),
            "-p",
            str(port),
            "-k",
            str(datadir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",  # a test database: speed over durability
        ]
        log = datadir / "postgres.log"
        # SIGINT is PostgreSQL's fast shutdown: it ends the sessions still open instead of waiting.
        with process_group(command, dict(os.environ), log, stop_signal=signal.SIGINT) as proc:
            ready = [_postgres_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
            wait_until(
                lambda: proc.poll() is None and subprocess.run(ready, check=False).returncode == 0,
                "PostgreSQL",
                log=log,
            )
            yield f"postgresql+psycopg2://airflow@127.0.0.1:{port}/postgres"
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


@dataclass
class CeleryDeployment:
    """The running deployment: its REST API, its workers, and what the tests ask of them."""

    airflow: Airflow
    base_url: str
    redis_url: str
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Seconds from the start of ``airflow db migrate`` until each step was done.
    startup: dict[str, float] = field(default_factory=dict)
    _token: str = ""

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``/api/v2`` + ``path``) as an admin; the JSON answer."""
        answer = self._request(method, path, **kwargs)
        assert answer.ok, f"{method} {path}: {answer.status_code} {answer.text[:1000]}"
        return answer.json()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if not self._token:  # the simple auth manager gives everyone an admin's token
            self._token = requests.get(f"{self.base_url}/auth/token", timeout=30).json()["access_token"]
        return requests.request(
            method,
            f"{self.base_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=30,
            **kwargs,
        )

    def trigger(self, dag_id: str) -> str:
        """Start a run of ``dag_id`` once the DAG processor has parsed it; its run id."""
        wait_until(lambda: self._dag_known(dag_id), f"DAG {dag_id}")
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        run_id: str = run["dag_run_id"]
        return run_id

    def _dag_known(self, dag_id: str) -> bool:
        return self._request("GET", f"/dags/{dag_id}").ok

    def run_state(self, dag_id: str, run_id: str) -> str:
        state: str = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]
        return state

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the run ends; its final state."""
        wait_until(
            lambda: self.run_state(dag_id, run_id) in {"success", "failed"},
            f"run {run_id} of {dag_id}",
            timeout,
        )
        return self.run_state(dag_id, run_id)

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        )
        return found

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of a task instance, first to last, with the ``hostname`` it ran on."""
        found = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/tries"
        )
        return sorted(found["task_instances"], key=lambda ti: ti["try_number"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path)["value"]

    @property
    def barrier_url(self) -> str:
        """The Redis database of the test DAGs' ``start_together`` barrier."""
        return f"{self.redis_url}/2"

    def kill_worker(self, name: str) -> None:
        """SIGKILL every process of one worker at once (the worker, its pool, the tasks it runs): a lost node."""
        worker = self.workers[name]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    def logs(self) -> str:
        """The tail of every process's log, for a failure message."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.airflow.home.glob("*.log"))
        )


@contextlib.contextmanager
def celery_deployment(home: Path, connection_json: str) -> Iterator[CeleryDeployment]:
    """Start the whole deployment with ``AIRFLOW_CONN_CALLBELL_DEFAULT=connection_json``; stop it after.

    ``connection_json`` may name ``{redis}``, replaced by the deployment's Redis URL (for the connection's
    ``rate_limit_storage``).
    """
    with contextlib.ExitStack() as stack:
        redis = RedisServer(home)  # Debian's redis-server, as the rate limit's own tests run it
        stack.callback(redis.stop)
        redis_url = redis.url.removesuffix("/0")
        database = stack.enter_context(postgres_server())
        airflow = Airflow(home, dags_folder=DAGS)
        airflow.env.update(
            {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
                "AIRFLOW__CELERY__BROKER_URL": f"{redis_url}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "3",
                # One secret for every process: the API server signs the tasks' tokens with it.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                "AIRFLOW_CONN_CALLBELL_DEFAULT": connection_json.replace("{redis}", redis_url),
                "CALLBELL_TEST_BARRIER": f"{redis_url}/2",  # CeleryDeployment.barrier_url
            }
        )
        began = time.monotonic()
        migrate = airflow.cli("db", "migrate", check=False)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        deployment = CeleryDeployment(airflow, f"http://127.0.0.1:{free_port()}", redis_url)
        deployment.startup["db migrate"] = time.monotonic() - began
        port = deployment.base_url.rsplit(":", 1)[1]
        airflow.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://localhost:{port}/execution/"
        # Every component starts at once (each takes tens of seconds to import Airflow on a busy
        # machine); the workers call the API server only once a task runs.
        components = {
            "api-server": [
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--apps",
                "all",
                "--workers",
                "1",
            ],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        started = {
            name: stack.enter_context(
                process_group([str(BIN / "airflow"), *args], airflow.env, home / f"{name}.log")
            )
            for name, args in components.items()
        }
        for name in WORKERS:
            env = {
                **airflow.env,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
                "CALLBELL_TEST_WORKER_HOSTNAME": f"{name}.test",
            }
            command = [
                str(BIN / "airflow"),
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--queues",
                f"default,{name}",
                "--skip-serve-logs",
            ]
            deployment.workers[name] = stack.enter_context(process_group(command, env, home / f"{name}.log"))
        # Stopping: every Airflow process is told at once, then each group is waited for (the ExitStack,
        # in reverse order: the workers first, PostgreSQL and Redis last).
        stack.callback(_terminate, [*started.values(), *deployment.workers.values()])
        api_log = home / "api-server.log"
        api_health = f"{deployment.base_url}/api/v2/monitor/health"
        wait_until(
            lambda: _running(started["api-server"], api_log) and _answers(api_health),
            "the API server",
            log=api_log,
        )
        # The execution API builds itself on its first request, which takes a minute on a busy machine
        # and holds up the server meanwhile: warm it before a task calls it.
        wait_until(
            lambda: _answers(f"{deployment.base_url}/execution/health"), "the execution API", log=api_log
        )
        deployment.startup["API server"] = time.monotonic() - began
        for name, worker in deployment.workers.items():
            log = home / f"{name}.log"
            wait_until(lambda log=log, w=worker: _ready(w, log), f"Celery {name}", log=log)
        deployment.startup["workers"] = time.monotonic() - began
        wait_until(
            lambda: _healthy(deployment.base_url),
            "scheduler, DAG processor and triggerer",
            log=home / "scheduler.log",
        )
        deployment.startup["all"] = time.monotonic() - began
        yield deployment


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)


def _running(proc: subprocess.Popen[bytes], log: Path) -> bool:
    """True while ``proc`` runs; fails the test at once if it exited."""
    if proc.poll() is not None:
        pytest.fail(f"{proc.args[1:3]} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
    return True


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).ok
    except requests.RequestException:
        return False


def _ready(worker: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether a Celery worker said it is ready; fails the test at once if it exited."""
    return _running(worker, log) and " ready." in log.read_text(errors="replace")


def _healthy(base_url: str) -> bool:
    health = requests.get(f"{base_url}/api/v2/monitor/health", timeout=30).json()
    return all(
        (health.get(part) or {}).get("status") == "healthy"
        for part in ("scheduler", "triggerer", "dag_processor")
    )
