"""Real Airflow runs: a throwaway AIRFLOW_HOME with SQLite, ``airflow dags test`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_callbell.sandbox import CallbellSandbox

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOGICAL_DATE = "2026-01-01"


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

    def dags_test(self, dag_id: str, sandbox: CallbellSandbox | None, **env: str) -> DagRunResult:
        """Run ``airflow dags test``; the default connection points at ``sandbox`` unless ``env`` says."""
        if sandbox is not None:
            env = {"AIRFLOW_CONN_CALLBELL_DEFAULT": sandbox.connection_json, **env}
        proc = self.cli("dags", "test", dag_id, LOGICAL_DATE, env=env, check=False)
        read = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "read_xcoms.py"), dag_id],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert read.returncode == 0, f"read_xcoms.py failed:\n{read.stderr[-3000:]}\n{proc.stderr[-3000:]}"
        found = json.loads(read.stdout.strip().splitlines()[-1])
        return DagRunResult(
            proc.returncode, proc.stdout + proc.stderr, found["run_id"], found["state"], found["xcoms"]
        )


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    instance = Airflow(tmp_path_factory.mktemp("airflow_home"))
    instance.cli("db", "migrate")
    return instance


@pytest.fixture
def sandbox():
    with CallbellSandbox(status_interval=0.2) as running:
        yield running
