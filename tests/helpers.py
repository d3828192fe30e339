"""Constants and helpers the unit tests share; fixtures live in ``conftest.py`` files only."""

from __future__ import annotations

import json
import queue
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping

    import pytest

TOKEN = "test-token-4f1c9e"
BASE_URL = "https://api.callbell.eu/v1"
SEND_URL = f"{BASE_URL}/messages/send"
UUID = "adf3d1216d4c4dcd908199d6700f2381"


def set_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str = "callbell_default", **fields: object
) -> None:
    """Define an Airflow connection through its environment variable, as users do in tests."""
    conn = {"conn_type": "callbell", "password": TOKEN, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def read_lines_in_background(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """Queue the process's stdout lines, so the test can wait for each with a timeout."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


class Waits(list):
    """Records the waits the policy asks for instead of sleeping them, and advances a fake clock."""

    now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Variables(dict):
    """Stands in for ``airflow.sdk.Variable``: the same three calls, kept in this dict."""

    def get(self, key: str, default: Any = None, deserialize_json: bool = False) -> Any:  # type: ignore[override]
        if key not in self:
            return default
        return json.loads(self[key]) if deserialize_json else self[key]

    def set(self, key: str, value: Any, description: str | None = None, serialize_json: bool = False) -> None:
        self[key] = json.dumps(value) if serialize_json else value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def assert_valid_body(body: Mapping[str, Any]) -> None:
    """A body Callbell can take: strict JSON (no NaN), UTF-8, exact built-in types, no nulls."""
    text = json.dumps(body, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates
    assert json.loads(text) == body  # exact built-in types: nothing serialises differently
    assert None not in body.values()
