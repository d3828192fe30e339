"""Every example DAG, run end to end by a real Airflow against the local Callbell sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS
from tests.compat import DagBag

pytestmark = pytest.mark.integration

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


def test_every_example_dag_imports_without_errors():
    dagbag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert dagbag.import_errors == {}
    expected = {path.stem for path in EXAMPLE_DAGS.glob("example_*.py")}
    if not AIRFLOW_V_3_1_PLUS:  # Human-in-the-loop came with 3.1: that example defines no DAG before
        expected.remove("example_callbell_hitl")
    assert expected <= set(dagbag.dag_ids)


def test_pipeline_renders_templates_and_pushes_xcom(airflow, callbell_sandbox):
    result = airflow.dags_test("example_callbell_pipeline", callbell_sandbox)
    assert result.returncode == 0, result.output[-3000:]
    (message,) = callbell_sandbox.messages
    assert message["body"] == {
        "to": "+31612345678",
        "from": "whatsapp",
        "type": "text",
        "content": {
            "text": f"example_callbell_pipeline loaded 1234 rows for 2026-01-01 (run {result.run_id})"
        },
        "metadata": {"dag_id": "example_callbell_pipeline", "run_id": result.run_id},
    }
    assert result.xcom("notify_on_call") == message["uuid"]
    assert result.xcom("notify_on_call", key="callbell_message") == {
        "uuid": message["uuid"],
        "status": "enqueued",
    }


def test_media_messages(airflow, callbell_sandbox):
    result = airflow.dags_test("example_callbell_media", callbell_sandbox)
    assert result.returncode == 0, result.output[-3000:]
    image, document = (m["body"] for m in callbell_sandbox.messages)
    assert (image["type"], image["content"]) == (
        "image",
        {"url": "https://example.com/charts/2026-01-01.png", "text": "Daily sales for 2026-01-01"},
    )
    assert (document["type"], document["content"]) == (
        "document",
        {"url": "https://example.com/reports/2026-01-01.pdf"},
    )
    assert [result.xcom("send_chart"), result.xcom("send_report")] == [
        m["uuid"] for m in callbell_sandbox.messages
    ]


def test_template_message(airflow, callbell_sandbox):
    result = airflow.dags_test("example_callbell_template", callbell_sandbox)
    assert result.returncode == 0, result.output[-3000:]
    (message,) = callbell_sandbox.messages
    assert message["body"] == {
        "to": "+31612345678",
        "from": "whatsapp",
        "type": "text",
        "content": {"text": "Ada"},
        "template_uuid": "d980fb66fd5043d3ace1aa06ba044342",
        "optin_contact": True,
        "template_values": ["Ada", "1042"],
    }
    assert result.xcom("send_order_update") == message["uuid"]


def test_mapped_operator(airflow, callbell_sandbox):
    result = airflow.dags_test("example_callbell_mapped", callbell_sandbox)
    assert result.returncode == 0, result.output[-3000:]
    sent = {
        (m["body"]["to"], m["body"]["from"], m["body"]["content"]["text"]): m["uuid"]
        for m in callbell_sandbox.messages
    }
    assert set(sent) == {
        ("+31612345678", "whatsapp", "Maintenance tonight at 22:00 (2026-01-01)"),
        ("+31687654321", "whatsapp", "Maintenance tonight at 22:00 (2026-01-01)"),
        ("+31612345678", "whatsapp", "Your order shipped"),
        ("tg_4242", "telegram", "Your order shipped"),
    }
    assert (
        result.xcom("same_text_to_each", map_index=1)
        == sent[("+31687654321", "whatsapp", "Maintenance tonight at 22:00 (2026-01-01)")]
    )
    assert (
        result.xcom("own_message_to_each", map_index=1) == sent[("tg_4242", "telegram", "Your order shipped")]
    )
