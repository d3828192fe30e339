"""Measure what the provider costs, each figure a ratio taken side by side in one run.

    make bench            # or: .venv/bin/python benchmarks/run.py

1. Import cost: self time (``python -X importtime``) of the modules that importing the operator, the
   notifier or the sensor adds to a DAG file that already imports ``airflow.sdk``; official
   providers' operators and notifiers beside them when they are installed.
2. Per-message cost: ``CallbellHook.send_message`` over a bare ``requests.Session.post`` of the same
   body, to the same loopback server, interleaved so that both see the same machine state.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

IMPORT_RUNS = 7
SEND_ROUNDS = 20
SEND_PER_ROUND = 100

MODULES = {
    "airflow_provider_callbell.operators.callbell": "CallbellSendMessageOperator",
    "airflow_provider_callbell.notifications.callbell": "CallbellNotifier",
    "airflow_provider_callbell.sensors.callbell": "CallbellMessageStatusSensor",
    "airflow.providers.smtp.notifications.smtp": "SmtpNotifier (official)",
    "airflow.providers.telegram.operators.telegram": "TelegramOperator (official)",
    "airflow.providers.slack.operators.slack": "SlackAPIPostOperator (official)",
    "airflow.providers.http.operators.http": "HttpOperator (official)",
}


def import_self_time_ms(module: str) -> float | None:
    """Median over runs of the self time of every module imported after ``airflow.sdk``."""
    code = f"import airflow.sdk, sys; sys.stderr.write('--mark--\\n'); import {module}"
    totals = []
    for _ in range(IMPORT_RUNS):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
        )
        if proc.returncode != 0:
            return None  # not installed
        after = proc.stderr.split("--mark--\n", 1)[1]
        totals.append(
            sum(
                int(line.split("|")[0].split(":")[1])
                for line in after.splitlines()
                if line.startswith("import time:")
            )
        )
    return statistics.median(totals) / 1000


class _Canned(BaseHTTPRequestHandler):
    """The smallest Callbell look-alike: reads the body, answers the documented send response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every answer on loopback
    wbufsize = -1  # one write per answer; handle_one_request flushes
    answer = json.dumps(
        {"message": {"uuid": "adf3d1216d4c4dcd908199d6700f2381", "status": "enqueued"}}
    ).encode()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: Any) -> None:
        pass


def send_cost() -> tuple[float, float]:
    """Return (bare post µs, hook µs) per message, medians of interleaved rounds."""
    import requests

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/v1"
    os.environ["AIRFLOW_CONN_CALLBELL_BENCH"] = json.dumps(
        {"conn_type": "callbell", "host": base, "password": "bench-token"}
    )
    from airflow_provider_callbell.hooks.callbell import CallbellHook

    hook = CallbellHook("callbell_bench")
    message = {"to": "+31612345678", "type": "text", "content": {"text": "Hello!"}}
    bare = requests.Session()
    bare.headers.update(
        {
            "Authorization": "Bearer bench-token",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
    )
    body = {"to": "+31612345678", "from": "whatsapp", "type": "text", "content": {"text": "Hello!"}}

    def bare_send() -> None:
        bare.post(f"{base}/messages/send", json=body, timeout=(5, 30)).json()["message"]

    def hook_send() -> None:
        hook.send_message(**message)

    bare_rounds, hook_rounds = [], []
    for fn in (bare_send, hook_send):  # warm both connections up
        fn()
    for _ in range(SEND_ROUNDS):
        for fn, rounds in ((bare_send, bare_rounds), (hook_send, hook_rounds)):
            start = time.perf_counter()
            for _ in range(SEND_PER_ROUND):
                fn()
            rounds.append((time.perf_counter() - start) / SEND_PER_ROUND * 1e6)
    server.shutdown()
    return statistics.median(bare_rounds), statistics.median(hook_rounds)


def main() -> None:
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )
    print()
    print("| import over `airflow.sdk` | added self time (ms) |")
    print("| --- | ---: |")
    for module, label in MODULES.items():
        ms = import_self_time_ms(module)
        print(f"| {label} | {'not installed' if ms is None else f'{ms:.1f}'} |")
    print()
    bare_us, hook_us = send_cost()
    print("| per message, loopback | µs | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| bare `requests.Session.post` | {bare_us:.0f} | 1.00 |")
    print(f"| `CallbellHook.send_message` | {hook_us:.0f} | {hook_us / bare_us:.2f} |")


if __name__ == "__main__":
    main()
