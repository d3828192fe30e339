"""What the notifier's tests share: a task callback's context, and the texts that went out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.compat import DAG, TaskInstanceState

LOG_URL = "http://localhost:8080/dags/etl/runs/manual__1/tasks/load?try_number=3"


def task_context(state: Any = "failed", **ti_fields: Any) -> dict[str, Any]:
    """What a task callback receives, as far as the notifier reads it."""
    ti = SimpleNamespace(
        dag_id="etl",
        task_id="load",
        run_id="manual__1",
        state=state,
        try_number=3,
        max_tries=2,
        map_index=-1,
        log_url=LOG_URL,
    )
    vars(ti).update(ti_fields)
    context: dict[str, Any] = {
        "dag": DAG("etl", schedule=None),
        "ti": ti,
        "run_id": ti.run_id,
        "params": {"on_call": "+31612345678", "team": "data ops"},
    }
    if state in ("failed", "up_for_retry", TaskInstanceState.FAILED):
        context["exception"] = ValueError("12 rows without a customer id")
    return context


def texts(send_ok: Any) -> list[str]:
    return [request.json()["content"]["text"] for request in send_ok.request_history]
