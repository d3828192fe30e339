"""The README's DAG and notifier examples are code users copy: each must import as a DAG file would."""

from __future__ import annotations

import re
from pathlib import Path

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.compat import DagBag, DagSerialization

README = Path(__file__).resolve().parents[1] / "README.md"

#: The README writes DAG files for Airflow 3; its Compatibility section tells 2.x users these imports.
AIRFLOW_2_IMPORTS = {"DAG": "from airflow import DAG", "task": "from airflow.decorators import task"}


def as_airflow_2(block: str) -> str | None:
    """The block as a 2.x user writes it, or ``None`` for a feature of Airflow 3 alone (Deadline Alerts)."""
    if "airflow.sdk.definitions" in block:
        return None

    def rewrite(match: re.Match[str]) -> str:
        return "\n".join(AIRFLOW_2_IMPORTS[name.strip()] for name in match[1].split(","))

    return re.sub(r"^from airflow\.sdk import (.+)$", rewrite, block, flags=re.M)


def test_readme_dags_import_and_serialize(tmp_path):
    blocks = [
        block
        for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        if "DAG(" in block or "CallbellNotifier(" in block
    ]
    if not AIRFLOW_V_3_0_PLUS:
        blocks = [rewritten for rewritten in map(as_airflow_2, blocks) if rewritten is not None]
        assert "airflow.sdk" not in "".join(blocks)
    for number, block in enumerate(blocks):
        (tmp_path / f"readme_{number}.py").write_text(block)
    # safe_mode=False: the notifier-only snippet mentions no DAG, and must be imported all the same.
    dagbag = DagBag(dag_folder=str(tmp_path), safe_mode=False)
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == sum("DAG(" in block for block in blocks) >= (4 if AIRFLOW_V_3_0_PLUS else 3)
    for dag in dagbag.dags.values():
        assert DagSerialization.from_dict(DagSerialization.to_dict(dag)).dag_id == dag.dag_id
