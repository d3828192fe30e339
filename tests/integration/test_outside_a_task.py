"""What a hook sees outside a task (a Python shell, a script), and the way around in the docs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.helpers import ROOT

pytestmark = pytest.mark.integration

CONN_ID = "callbell_outside"  # in the session's Airflow database only
CONNECTED = "(True, 'Connected to Callbell as sandbox@example.com')"


def docs_workaround() -> str:
    """The Python block of the "Outside a task" section of docs/installation.md, for ``CONN_ID``."""
    page = (ROOT / "docs" / "installation.md").read_text()
    code = re.search(r"```python\n(.*?)```", page.split("## Outside a task", 1)[1], re.S)[1]
    assert 'conn_id = "callbell_default"' in code
    return code.replace('conn_id = "callbell_default"', f"conn_id = {CONN_ID!r}")


def test_a_database_connection_outside_a_task(airflow, callbell_sandbox) -> None:
    airflow.cli(
        "connections", "add", CONN_ID, "--conn-type", "callbell",
        "--conn-host", callbell_sandbox.url, "--conn-password", callbell_sandbox.token,
    )  # fmt: skip

    def python(code: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=airflow.env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.strip().splitlines()[-1]

    show = (
        "import json; from airflow_provider_callbell.hooks.callbell import CallbellHook; "
        f"print(json.dumps(CallbellHook({CONN_ID!r}).test_connection()))"
    )
    ok, message = json.loads(python(show))
    if AIRFLOW_V_3_0_PLUS:  # the database is out of reach, and the error says so
        assert not ok
        assert message.startswith(f"Connection {CONN_ID!r} is not defined: ")
        assert message.endswith("not from its database)")
    else:
        assert (ok, message) == (True, "Connected to Callbell as sandbox@example.com")
    # The documented way around works on both lines.
    assert python(docs_workaround()) == CONNECTED
