"""The HITL bridge on an Airflow without Human-in-the-loop (2.x): a DAG using it fails when parsed, saying why."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_VERSION
from tests.compat import DagBag

if TYPE_CHECKING:
    from pathlib import Path

DAG_FILE = """
import pendulum
from airflow import DAG
from airflow_provider_callbell.operators.hitl import CallbellHITLResponseOperator

with DAG("uses_the_bridge", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    CallbellHITLResponseOperator(task_id="answer", hitl_task_id="approve", to="+31612345678")
"""


def test_a_dag_using_the_bridge_parses_only_where_hitl_exists(tmp_path: Path) -> None:
    path = tmp_path / "uses_the_bridge.py"
    path.write_text(textwrap.dedent(DAG_FILE))
    dagbag = DagBag(dag_folder=str(path))
    if AIRFLOW_V_3_1_PLUS:
        assert dagbag.import_errors == {}
        assert "uses_the_bridge" in dagbag.dag_ids
        return
    (error,) = dagbag.import_errors.values()
    assert "ImportError: CallbellHITLResponseOperator needs Airflow 3.1 or later" in error
    assert f"this is Airflow {AIRFLOW_VERSION}" in error
    assert dagbag.dag_ids == []
