"""``docs/sending.md`` derives from the one description of a message, and its DAG example imports."""

from __future__ import annotations

import re
from pathlib import Path

from airflow_provider_callbell.validation import MESSAGE_FIELDS, fields_table
from tests.compat import DagBag

PAGE = Path(__file__).resolve().parents[2] / "docs" / "sending.md"


def test_the_field_table_is_made_from_message_fields():
    text = PAGE.read_text()
    table = re.search(r"<!-- fields-table:.*?-->\n(.*?)\n<!-- end of fields-table -->", text, re.DOTALL)
    assert table, "the markers around the field table are missing"
    assert table.group(1) == fields_table(), (
        "regenerate the table: python -c 'from airflow_provider_callbell.validation import fields_table; "
        "print(fields_table())'"
    )
    assert [row.split("`")[1] for row in fields_table().splitlines()[2:]] == list(MESSAGE_FIELDS)


def test_the_example_dag_imports(tmp_path):
    [example] = re.findall(r"\n```python\n(import pendulum\n.*?)```", PAGE.read_text(), re.DOTALL)
    (tmp_path / "sending.py").write_text(
        example.replace("from airflow.sdk import DAG", "from tests.compat import DAG")
    )
    bag = DagBag(dag_folder=str(tmp_path), safe_mode=False)
    assert not bag.import_errors
    assert len(bag.dags["callbell_sending"].tasks) == 6
