"""What the sandbox's own tests share: its default token, a text message, a raw send and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from tests.helpers import read_lines_in_background

if TYPE_CHECKING:
    import queue
    from collections.abc import Iterator

    import requests

    from airflow_provider_callbell.sandbox import CallbellSandbox

TOKEN = "sandbox-token"
TEXT = {"to": "+31612345678", "from": "whatsapp", "type": "text", "content": {"text": "Hello!"}}


def send(client: requests.Session, callbell_sandbox: CallbellSandbox, body: Any) -> requests.Response:
    return client.post(f"{callbell_sandbox.url}/messages/send", json=body, timeout=5)


@contextlib.contextmanager
def running_cli(*args: str) -> Iterator[tuple[dict[str, Any], queue.Queue[str]]]:
    """``python -m airflow_provider_callbell.sandbox --port 0 *args`` in a process group of its own.

    Yields the connection it printed and the queue of its later stdout lines (the first one after
    the start-up lines is the first logged message); the group is killed on the way out, also when the
    test fails or is interrupted.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_callbell.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = read_lines_in_background(process)
        export = lines.get(timeout=10)
        assert export.startswith("export AIRFLOW_CONN_CALLBELL_DEFAULT="), export
        connection = json.loads(export.strip().split("=", 1)[1].strip("'"))
        for start_up in ("Callbell sandbox listening on", "Web inbox:"):
            assert lines.get(timeout=5).startswith(start_up)
        yield connection, lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
