"""The first hour, as docs/getting-started.md writes it: every shell block run as written, on a bare home.

The test reads the page's ``bash`` blocks and runs them in order in one bash script, with ``HOME`` a
temporary folder (so ``~/airflow`` and ``~/callbell-venv`` are fresh), no ``AIRFLOW_*`` variable and no
venv on ``PATH``. The block that starts the sandbox "in a second terminal" runs in the background of the
same script, which waits until the sandbox says it listens. The DAG file is saved where the page says.

What cannot run here is replaced, and only that (see ``SUBSTITUTIONS``): installing Airflow from PyPI
would take minutes and the network, so the project's venv stands in for the new one (``python3 -m venv``
becomes a symlink to it, ``pip install`` becomes a check that it holds the Airflow version the page
installs), and the clone is this checkout. The page's sandbox port, 8787, becomes a free port, since
another sandbox may be running on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import airflow_provider_callbell
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.docs.helpers import ROOT, CodeBlock, code_blocks, runnable_blocks
from tests.integration.helpers import BIN

pytestmark = [
    pytest.mark.integration,
    # The page installs Airflow 3.3.2 and writes DAG files for Airflow 3; test_docs_dags.py runs its
    # DAG on 2.x too, as the page tells 2.x users to write it.
    pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Getting started installs Airflow 3"),
]

PAGE = ROOT / "docs" / "getting-started.md"
PAGE_PORT = "8787"
VENV = Path(sys.prefix)
#: The page's lines that cannot run here -> what runs instead. Each must be found in the page.
SUBSTITUTIONS = {
    "git clone https://github.com/airflow-provider-callbell/airflow-provider-callbell": (
        f"ln -s {ROOT} airflow-provider-callbell"
    ),
    "python3 -m venv ~/callbell-venv": f"ln -s {VENV} ~/callbell-venv",
    # A `pip install` line and its continuation lines: the venv has the Airflow the page installs.
    "pip install ": (
        'test "$(python -c \'from importlib.metadata import version; print(version("apache-airflow"))\')"'
        ' = "$AIRFLOW_VERSION"'
    ),
}
#: Blocks the first hour does not run, and who runs them instead.
RUN_ELSEWHERE = {"make demo\n": ".ci/run runs `make demo`"}
SECOND_TERMINAL = "python -m airflow_provider_callbell.sandbox"
STARTUP_TIMEOUT = 60  # seconds for the sandbox to print its lines; about 2 s on an idle machine


def substituted(block: CodeBlock, port: int) -> str:
    lines = iter(block.code.replace(PAGE_PORT, str(port)).splitlines())
    script = []
    for line in lines:
        replacement = next((new for old, new in SUBSTITUTIONS.items() if line.startswith(old)), None)
        if replacement is None:
            script.append(line)
            continue
        script.append(replacement)
        while line.endswith("\\"):  # the substituted command's continuation lines go with it
            line = next(lines)
    return "\n".join(script) + "\n"


def first_hour_script(port: int) -> tuple[str, str]:
    """The page's shell blocks as one bash script, and the export line the page shows."""
    blocks = [block for block in code_blocks(PAGE) if block.language == "bash"]
    run = [block for block in blocks if block.code not in RUN_ELSEWHERE]
    assert len(blocks) - len(run) == len(RUN_ELSEWHERE), "every block set aside is still in the page"
    for old in SUBSTITUTIONS:
        assert any(line.startswith(old) for block in run for line in block.code.splitlines()), old

    script = ["set -euo pipefail -x", "PS4='+ [$SECONDS s] '"]  # each command and when it started
    export_line = ""
    for block in run:
        code = substituted(block, port)
        if SECOND_TERMINAL in code:
            # The second terminal: in the background, its output in a file; go on once it listens.
            script.append(f"( {{ set +x; }} 2>/dev/null\n{code}) > sandbox.out 2>&1 &")
            script.append(
                f"for _ in $(seq {STARTUP_TIMEOUT * 5}); do "
                "grep -q 'listening on' sandbox.out && break; sleep 0.2; done"
            )
            script.append("grep -q 'listening on' sandbox.out || { cat sandbox.out; exit 1; }")
            continue
        if code.startswith("export AIRFLOW_CONN_CALLBELL_DEFAULT="):
            export_line = code.strip()
        script.append(code)
    assert export_line, "the page shows the connection line the sandbox prints"
    return "\n".join(script) + "\n", export_line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bare_environment(home: Path) -> dict[str, str]:
    """This process's environment without Airflow's settings or a venv: what a new shell has.

    ``PYTHONPATH`` stays: it is how a development checkout puts itself before the venv's copy.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AIRFLOW") and name not in {"VIRTUAL_ENV", "CALLBELL_API_KEY"}
    }
    path = [entry for entry in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if Path(entry) != BIN]
    return {
        **env,
        "HOME": str(home),
        "PATH": os.pathsep.join(path),
        "CALLBELL_API_KEY": "first-hour-api-key",
    }


def test_getting_started_runs_as_written_on_a_bare_machine(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    port = free_port()
    script, export_line = first_hour_script(port)
    # Step 4: the DAG file, saved where the page says.
    assert "Save it in the DAGs\nfolder as `~/airflow/dags/hello_callbell.py`" in PAGE.read_text()
    (dag_file,) = [block for block in runnable_blocks(PAGE) if 'dag_id="hello_callbell"' in block.code]
    script = script.replace(
        "airflow dags test hello_callbell",
        f"cat > ~/airflow/dags/hello_callbell.py <<'DAG'\n{dag_file.code}DAG\nairflow dags test hello_callbell",
        1,
    )
    (work / "first_hour.sh").write_text(script)

    env = bare_environment(home)
    log = work / "first_hour.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "first_hour.sh"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the script and the sandbox it starts: one group, killed below
        )
    try:
        proc.wait(timeout=600)
        output = log.read_text()
        sandbox_output = (work / "sandbox.out").read_text() if (work / "sandbox.out").exists() else ""
        assert proc.returncode == 0, f"{output[-4000:]}\n--- sandbox:\n{sandbox_output[-2000:]}"

        airflow_home = home / "airflow"
        # Step 2: the DAGs folder is where the page says, and Airflow lists the provider.
        assert f"{airflow_home}/dags\n" in output
        assert re.search(
            rf"^airflow-provider-callbell .*{re.escape(airflow_provider_callbell.__version__)}", output, re.M
        )
        # Step 3: the line the page shows is the line the sandbox prints.
        assert sandbox_output.splitlines()[0] == export_line

        # Step 4: one message, its text rendered, its uuid in the notify task's XCom.
        messages = requests.get(f"http://127.0.0.1:{port}/_sandbox/messages", timeout=10).json()["messages"]
        (message,) = messages
        xcoms = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "read_xcoms.py"), "hello_callbell"],
            env={**env, "AIRFLOW_HOME": str(airflow_home)},
            capture_output=True,
            text=True,
            check=True,
        )
        run = json.loads(xcoms.stdout.strip().splitlines()[-1])
        assert run["state"] == "success"
        ds = re.fullmatch(r"manual__(\d{4}-\d\d-\d\d)T.*", run["run_id"])[
            1
        ]  # `dags test` without a date: today
        assert message["body"]["to"] == "+31612345678"
        assert message["body"]["content"] == {"text": f"hello_callbell loaded 1234 rows for {ds}"}
        assert f"text message {message['uuid']} to +31612345678" in sandbox_output
        assert {(x["task_id"], x["key"]): x["value"] for x in run["xcoms"]}[
            ("notify", "return_value")
        ] == message["uuid"]

        # Step 5: the inbox answers, and the curl line printed the message.
        inbox = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert "<title>Callbell sandbox inbox</title>" in inbox.text
        assert message["uuid"] in output

        # Step 6: the stored connection is Callbell's, with the key and no host.
        stored = subprocess.run(
            [str(BIN / "airflow"), "connections", "get", "callbell_default", "--output", "json"],
            env={**env, "AIRFLOW_HOME": str(airflow_home)},
            capture_output=True,
            text=True,
            check=True,
        )
        (conn,) = json.loads(stored.stdout[stored.stdout.index("[") :])
        assert (conn["conn_type"], conn["host"], conn["password"]) == ("callbell", None, "first-hour-api-key")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
