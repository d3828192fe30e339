"""`make demo`: run the example pipeline in a real Airflow against the local Callbell sandbox.

Starts the sandbox on a free port, makes a throwaway AIRFLOW_HOME with SQLite under ``.demo/``,
migrates it, runs ``example_callbell_pipeline`` with ``airflow dags test``, then prints what the
sandbox received and the message uuid the task pushed to XCom. Nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from airflow_provider_callbell.sandbox import CallbellSandbox

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
BIN = Path(sys.executable).parent
DAG_ID = "example_callbell_pipeline"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(args: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-4000:], file=sys.stderr)
        sys.exit(f"demo failed: {' '.join(args[:3])} exited {proc.returncode}; full log in {log}")
    return proc


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(WORK / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with CallbellSandbox() as sandbox:
        step(f"Callbell sandbox listening on {sandbox.url}")
        env["AIRFLOW_CONN_CALLBELL_DEFAULT"] = sandbox.connection_json
        step(f"Migrating a throwaway Airflow database in {env['AIRFLOW_HOME']}")
        run([str(BIN / "airflow"), "db", "migrate"], env, WORK / "db_migrate.log")
        step(f"airflow dags test {DAG_ID}")
        run([str(BIN / "airflow"), "dags", "test", DAG_ID, "2026-01-01"], env, WORK / "dags_test.log")
        received = sandbox.messages
    xcoms = json.loads(
        run([sys.executable, str(ROOT / "scripts" / "read_xcoms.py"), DAG_ID], env, WORK / "xcoms.log").stdout
    )
    pushed = {row["key"]: row["value"] for row in xcoms["xcoms"] if row["task_id"] == "notify_on_call"}

    print()
    print(f"The sandbox received {len(received)} message(s):")
    for message in received:
        body = message["body"]
        print(f"  to {body['to']} via {body['from']}, type {body['type']}: {body['content'].get('text')!r}")
        print(f"  uuid {message['uuid']}")
    print(f"XCom of notify_on_call in run {xcoms['run_id']} ({xcoms['state']}):")
    print(f"  return_value     = {pushed.get('return_value')!r}")
    print(f"  callbell_message = {pushed.get('callbell_message')!r}")
    ok = len(received) == 1 and pushed.get("return_value") == received[0]["uuid"]
    print(f"\nDemo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s; logs in {WORK}/")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
