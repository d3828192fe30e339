"""The first DAG a reader meets, copied from the README and from Getting started, run by a real Airflow.

Both promise a DAG that sends one message with the run's rendered text and leaves its uuid in the send
task's XCom: ``airflow dags test`` against the sandbox checks that, on each Airflow line (the blocks
rewritten to 2.x imports as the docs tell 2.x users).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.docs.helpers import README, ROOT, as_airflow_2, runnable_blocks

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.helpers import Airflow

pytestmark = pytest.mark.integration

GETTING_STARTED = ROOT / "docs" / "getting-started.md"
#: dag_id -> (the page whose block defines it, its send task)
FIRST_DAGS = {"nightly_load": (README, "notify_on_call"), "hello_callbell": (GETTING_STARTED, "notify")}


def dag_file(page: Path, dag_id: str) -> str:
    (block,) = [block for block in runnable_blocks(page) if f'dag_id="{dag_id}"' in block.code]
    code = block.code if AIRFLOW_V_3_0_PLUS else as_airflow_2(block.code)
    assert code is not None
    return code


@pytest.fixture(scope="module")
def docs_dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAGs folder with the docs' first DAGs, run in the session's Airflow (one database for all)."""
    dags = tmp_path_factory.mktemp("docs_dags")
    for dag_id, (page, _) in FIRST_DAGS.items():
        (dags / f"{dag_id}.py").write_text(dag_file(page, dag_id))
    return dags


@pytest.mark.parametrize(
    "dag_id",
    [
        "nightly_load",
        pytest.param(
            "hello_callbell",
            # Getting started's DAG on Airflow 3 is run, with every command of the page, by
            # test_first_hour.py, which checks the same message and XCom.
            marks=pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="test_first_hour.py runs it on Airflow 3"),
        ),
    ],
)
def test_the_first_dag_sends_its_message(airflow: Airflow, docs_dags: Path, callbell_sandbox, dag_id):
    result = airflow.dags_test(dag_id, callbell_sandbox, AIRFLOW__CORE__DAGS_FOLDER=str(docs_dags))
    assert result.returncode == 0, result.output[-3000:]
    (message,) = callbell_sandbox.messages
    assert message["body"]["to"] == "+31612345678"
    assert message["body"]["content"] == {"text": f"{dag_id} loaded 1234 rows for 2026-01-01"}
    assert result.xcom(FIRST_DAGS[dag_id][1]) == message["uuid"]
