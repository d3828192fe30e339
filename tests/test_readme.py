"""The README's DAG and notifier examples are code users copy: each must import as a DAG file would."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_dags_import_and_serialize(tmp_path):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    blocks = [
        block
        for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        if "DAG(" in block or "CallbellNotifier(" in block
    ]
    for number, block in enumerate(blocks):
        (tmp_path / f"readme_{number}.py").write_text(block)
    # safe_mode=False: the notifier-only snippet mentions no DAG, and must be imported all the same.
    dagbag = DagBag(dag_folder=str(tmp_path), safe_mode=False)
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == sum("DAG(" in block for block in blocks) >= 4
    for dag in dagbag.dags.values():
        assert DagSerialization.to_dict(dag)["dag"]["dag_id"] == dag.dag_id
