"""Print, as JSON, every XCom of the newest run of a DAG; run with the test AIRFLOW_HOME."""

from __future__ import annotations

import json
import sys

from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

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
                        "value": XComModel.deserialize_value(row),
                    }
                    for row in rows
                ],
            }
        )
    )
