"""Real Airflow sees a wrong literal as a DAG import error, and mapped operators still expand."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.helpers import Airflow

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags_parse_time"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    instance = Airflow(tmp_path_factory.mktemp("airflow_home_parse_time"), dags_folder=DAGS)
    instance.migrate()
    return instance


def import_errors(airflow: Airflow, *args: str) -> dict[str, str]:
    proc = airflow.cli("dags", "list-import-errors", "--output", "json", *args, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the command fails when there are errors
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("[{")]  # after any log lines
    listed = json.loads(line)
    return {Path(row["filepath"]).name: row["error"] for row in listed}


def test_a_wrong_literal_is_an_import_error(airflow_home):
    if AIRFLOW_V_3_0_PLUS:  # Airflow 3 lists what the DAG processor stored; reserialize parses the same way
        airflow_home.cli("dags", "reserialize")
    errors = import_errors(airflow_home)
    assert set(errors) == {"callbell_bad_literal.py", "callbell_bad_operator_literal.py"}
    assert (
        "CallbellNotifier: to must be a phone number in international format for channel 'whatsapp'"
        in errors["callbell_bad_literal.py"]
    )
    assert "'0612345678' is a national number" in errors["callbell_bad_literal.py"]
    operator_error = errors["callbell_bad_operator_literal.py"]
    assert "task 'tell_the_team': to must be a phone number" in operator_error
    assert "did you mean '+31612345678'?" in operator_error
    listed = airflow_home.cli("dags", "list", "--output", "json").stdout
    assert "callbell_mapped_checked" in listed
    assert "callbell_bad_literal" not in listed


def test_mapped_operator_expands_and_checks_each_value_when_it_runs(airflow_home, callbell_sandbox):
    result = airflow_home.dags_test("callbell_mapped_checked", callbell_sandbox)
    assert result.state == "failed", result.output[-3000:]
    assert [m["body"]["to"] for m in callbell_sandbox.messages] == ["+31612345678"]
    assert callbell_sandbox.messages[0]["body"]["content"] == {"text": "Run 2026-01-01"}
    assert result.xcom("send_each", map_index=0) == callbell_sandbox.messages[0]["uuid"]
    assert "to must be a phone number in international format" in result.output
    assert "'0612345678' is a national number" in result.output
    states = task_states(airflow_home, "callbell_mapped_checked")
    assert states[("send_each", 0)] == ("success", 1)
    assert states[("send_each", 1)] == ("failed", 1)  # a validation error is not retried (retries=2)


def task_states(airflow: Airflow, dag_id: str) -> dict[tuple[str, int], tuple[str, int]]:
    """(task_id, map_index) -> (state, try_number) of the DAG's task instances (one run in this home),
    read from the home's SQLite file: importing Airflow's models for it would cost 5 s of CPU."""
    with closing(sqlite3.connect(f"file:{airflow.home / 'airflow.db'}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ?", (dag_id,)
        ).fetchall()
    return {(task, index): (state, tries) for task, index, state, tries in rows}
