"""Print, as JSON, every XCom of the newest run of a DAG; run with the test AIRFLOW_HOME."""

from __future__ import annotations

import json
import sys

from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.models.xcom import XComModel

    value_of = XComModel.deserialize_value
else:  # Airflow 2.x: the ORM model is XCom itself, and it deserializes each row as it loads it
    from airflow.models.xcom import XCom as XComModel

    def value_of(row: XComModel) -> object:
        return row.value


with create_session() as session:
    run = session.query(DagRun).filter(DagRun.dag_id == sys.argv[1]).order_by(DagRun.id.desc()).first()
    rows = session.query(XComModel).filter(XComModel.dag_id == sys.argv[1], XComModel.run_id == run.run_id)
    print(
        json.dumps(
            {
                "run_id": run.run_id,
                "state": str(run.state),
                "xcoms": [
                    {
                        "task_id": row.task_id,
                        "map_index": row.map_index,
                        "key": row.key,
                        "value": value_of(row),
                    }
                    for row in rows
                ],
            }
        )
    )
