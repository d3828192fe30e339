"""Measure the shared rate limit: bulk sends in separate processes against the sandbox enforcing 300/s.

    .venv/bin/python benchmarks/shared_limit.py [ROUNDS]

Each round runs, against a fresh sandbox (a process of its own, 300 requests per second, 50 ms per
answer) and a throwaway ``redis-server`` (Debian's package, its own process group):

- one process sending :data:`MESSAGES` messages with ``send_messages`` and its defaults, without and
  with the connection extra ``rate_limit_storage`` (sharing must not slow a lone sender);
- two processes sending :data:`MESSAGES` each at once, without and with it;
- the same two with it, one of them stopped (``SIGSTOP``) for :data:`STALL_SECONDS` every
  :data:`STALL_EVERY` seconds, as a busy machine or a long garbage collection stalls a worker: its
  threads wake after their places, and would go out bunched with the other process's requests.

It prints, per case, the messages per second from the common start to the last one's end, as a share
of the 300/s limit, the senders' CPU time per message (what a busy machine disturbs least: the cost of
the round trips to Redis), the requests answered 429, and what the sandbox stored (nothing lost,
nothing twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ACCOUNT_LIMIT, LATENCY, SandboxProcess, _free_port

MESSAGES = 3000
#: The stalled case: one sender is stopped this long, this often (seconds).
STALL_SECONDS = 0.1
STALL_EVERY = 2.0

_SENDER = """
import json, sys, time
from airflow_provider_callbell.hooks.callbell import CallbellHook

count, name, start_at = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
hook = CallbellHook("callbell_bench")
hook.session
while time.time() < start_at:
    time.sleep(0.005)
cpu = time.process_time()
results = hook.send_messages({"to": f"+316{i:08d}", "content": {"text": f"{name} {i}"}} for i in range(count))
cpu = time.process_time() - cpu
print(json.dumps({"end": time.time(), "cpu": cpu, "failed": sum("error" in r for r in results)}))
"""


def stall_now_and_then(sender: subprocess.Popen[str], start_at: float) -> None:
    """Stop ``sender`` for :data:`STALL_SECONDS` every :data:`STALL_EVERY` seconds until it ends."""
    next_stall = start_at + STALL_EVERY
    while sender.poll() is None:
        time.sleep(max(0.0, next_stall - time.time()))
        with contextlib.suppress(ProcessLookupError):
            sender.send_signal(signal.SIGSTOP)
            time.sleep(STALL_SECONDS)
            sender.send_signal(signal.SIGCONT)
        next_stall += STALL_EVERY


def run_case(processes: int, storage: str | None, stalled: bool = False) -> dict[str, float]:
    sandbox = SandboxProcess("--rate-limit", str(ACCOUNT_LIMIT), "--latency", str(LATENCY))
    senders: list[subprocess.Popen[str]] = []
    try:
        connection = json.loads(sandbox.connection)
        if storage:
            connection["extra"] = {"rate_limit_storage": storage}
        env = {**os.environ, "AIRFLOW_CONN_CALLBELL_BENCH": json.dumps(connection)}
        time.sleep(1.1)  # an empty rate window
        start_at = time.time() + 8  # every sender has imported Airflow and read its connection by then
        senders += [
            subprocess.Popen(
                [sys.executable, "-c", _SENDER, str(MESSAGES), f"p{k}", str(start_at)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for k in range(processes)
        ]
        if stalled:
            threading.Thread(target=stall_now_and_then, args=(senders[0], start_at), daemon=True).start()
        ends = [json.loads(s.communicate()[0].strip().splitlines()[-1]) for s in senders]
        answers = Counter(r["status"] for r in sandbox.inspect("requests"))
        stored = Counter(m["body"]["content"]["text"] for m in sandbox.inspect("messages"))
    finally:
        for sender in senders:  # an interrupted run leaves no sender behind, a stopped one included
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        sandbox.stop()
    total = processes * MESSAGES
    rate = total / (max(e["end"] for e in ends) - start_at)
    return {
        "rate": rate,
        "cpu_us": 1e6 * sum(e["cpu"] for e in ends) / total,
        "share": rate / ACCOUNT_LIMIT,
        "requests": sum(answers.values()),
        "429": answers[429],
        "failed": sum(e["failed"] for e in ends),
        "lost": total - len(stored),
        "twice": sum(n - 1 for n in stored.values()),
    }


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    port = _free_port()
    directory = tempfile.mkdtemp(prefix="callbell-bench-redis-")
    redis = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            directory,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        print(
            f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
            f"{MESSAGES} messages per process; sandbox {ACCOUNT_LIMIT}/s, {LATENCY * 1000:.0f} ms"
        )
        print(
            "| processes | rate_limit_storage | messages/s | share of 300/s | CPU µs/message | 429 | failed | lost | twice |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        shared = f"redis://127.0.0.1:{port}/0"
        cases = [
            (1, None, False),
            (1, shared, False),
            (2, None, False),
            (2, shared, False),
            (2, shared, True),
        ]
        for _ in range(rounds):
            for processes, storage, stalled in cases:
                r = run_case(processes, storage, stalled)
                stall = f", one stopped {STALL_SECONDS:g} s every {STALL_EVERY:g} s" if stalled else ""
                print(
                    f"| {processes}{stall} | {'redis' if storage else 'unset'} | {r['rate']:.0f} | {r['share']:.1%} | {r['cpu_us']:.0f} "
                    f"| {r['429']:.0f} of {r['requests']:.0f} | {r['failed']:.0f} | {r['lost']:.0f} | {r['twice']:.0f} |",
                    flush=True,
                )
    finally:
        os.killpg(redis.pid, signal.SIGTERM)
        redis.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
