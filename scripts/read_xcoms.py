"""Print, as JSON, the newest run of a DAG and its XComs, read from the SQLite metadata database of
``$AIRFLOW_HOME`` (``airflow.db``, or ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` when it names another
SQLite file).

It reads the two tables with the standard ``sqlite3`` module rather than through Airflow's models:
importing those costs about 5 s of CPU, and the integration tests read a run after every
``airflow dags test``. The shape is ``{"run_id", "state", "xcoms": [{"task_id", "map_index", "key",
"value"}]}``; a value is what the task pushed, decoded as Airflow decodes it:

- Airflow 3 stores a value as JSON (the column's type) as the task sent it through the execution
  API; ``XComModel.deserialize_value`` decodes a string once more when it is JSON itself.
- Airflow 2.x stores the JSON text as bytes (``enable_xcom_pickling`` off, its default).

A value that Airflow's own serializer encoded (a dict with ``__classname__`` or ``__type``, e.g. a
datetime) comes back as that encoded dict on Airflow 3, as ``deserialize_value`` leaves it; on 2.x it
would be decoded into the object, which this script refuses rather than returning something else.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

SQLITE_PREFIX = "sqlite:///"
ENCODED_MARKERS = ("__classname__", "__type")


def database_path(env: dict[str, str]) -> Path:
    """The SQLite file of the metadata database that ``env`` gives Airflow."""
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if url is None:
        return Path(env.get("AIRFLOW_HOME", Path.home() / "airflow")) / "airflow.db"
    if not url.startswith(SQLITE_PREFIX):
        raise SystemExit(f"read_xcoms.py reads SQLite databases only, not {url.split(':', 1)[0]}")
    return Path(url.removeprefix(SQLITE_PREFIX).split("?", 1)[0])


def decoded(raw: str | bytes | int | float | None) -> Any:
    """A stored XCom value as ``XComModel.deserialize_value`` (Airflow 3) or ``XCom.deserialize_value``
    (Airflow 2.x, JSON) returns it."""
    if raw is None:
        return None
    if isinstance(raw, bytes):  # Airflow 2.x: a BLOB of JSON text
        return json.loads(raw.decode("utf-8"), object_hook=refuse_encoded)
    value = json.loads(raw) if isinstance(raw, str) else raw  # Airflow 3: a JSON column
    if isinstance(value, str):
        try:
            return json.loads(value, object_hook=refuse_encoded)
        except ValueError:
            return value
    return value


def refuse_encoded(obj: dict[str, Any]) -> dict[str, Any]:
    if any(marker in obj for marker in ENCODED_MARKERS):
        raise SystemExit(f"read_xcoms.py cannot decode a value Airflow's serializer encoded: {obj}")
    return obj


def last_run(database: Path, dag_id: str) -> dict[str, Any]:
    """The newest run of ``dag_id`` (the highest ``dag_run.id``) and its XComs."""
    if not database.is_file():
        raise SystemExit(f"no Airflow database at {database}")
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        run = connection.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if run is None:
            raise SystemExit(f"no run of {dag_id} in {database}")
        rows = connection.execute(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ?"
            " ORDER BY task_id, map_index, key",
            (dag_id, run[0]),
        ).fetchall()
    return {
        "run_id": run[0],
        "state": run[1],
        "xcoms": [
            {"task_id": task_id, "map_index": map_index, "key": key, "value": decoded(value)}
            for task_id, map_index, key, value in rows
        ],
    }


if __name__ == "__main__":
    print(json.dumps(last_run(database_path(dict(os.environ)), sys.argv[1])))
