"""Constants and helpers the unit tests share; fixtures live in ``conftest.py`` files only."""

from __future__ import annotations

import json
import queue
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

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
