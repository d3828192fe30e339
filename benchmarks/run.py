"""Measure what the provider costs, each figure a ratio taken side by side in one run.

    make bench            # or: .venv/bin/python benchmarks/run.py

1. Import cost: self time (``python -X importtime``) of the modules that importing the operators, the
   notifier or the sensor adds to a DAG file that already imports ``airflow.sdk``, as a share of what
   ``airflow.sdk`` itself costs; official providers' modules beside them when they are installed.
2. Per-message cost: ``CallbellHook.send_message`` over a bare ``requests.Session.post`` of the same
   body, to the same loopback server (in a process of its own), interleaved so that both see the same
   machine state: wall time, and this process's CPU time, which a busy machine disturbs less.
3. Throughput: ``CallbellHook.send_messages`` against the Callbell sandbox, in a process of its own,
   enforcing 300 requests per second and answering each in 50 ms, next to a plain loop of
   ``send_message``; as a share of the limit. What the sandbox stored is checked: nothing lost, nothing
   sent twice, no request answered 429.
5. Deferred status triggers: :data:`TRIGGERS` ``CallbellMessageStatusTrigger`` runs in one event loop,
   as a triggerer holds them, polling the sandbox (in a process of its own) until each message is
   ``read``: the loop's worst stall (a 5 ms ticker's largest lateness; goal under 50 ms), requests
   per second, and whether every trigger fired its ``status`` event.
4. Memory: peak RSS growth of a fresh process over ``send_messages`` of 10,000 and 100,000 generated
   messages (warmed up first, then its peak reset through ``/proc/self/clear_refs``), next to the size
   of the results the call returns: the growth should be those results and nothing else.
   ``benchmarks/run.py --memory`` runs this part alone.
5. Waiting for replies: 500 ``CallbellReplyTrigger`` runs in one event loop, as deferred reply sensors
   in one triggerer, polling the sandbox (in a process of its own) for answers to 500 questions; half
   of the people answer midway. Requests per poll (the goal is 1 while nothing new arrived), the event
   loop's worst stall (a 10 ms ticker's largest lateness, wall and the loop's CPU time), the longest
   single step of the loop (one callback's CPU time: what one trigger can hold the loop for; goal under
   50 ms), the loop's CPU time over the run, the ticks later than 50 ms (when they came: the start,
   the answers, the deadline; and how many loop steps the worst one waited behind), and how long
   answers took to be seen. On a machine whose cores are busy with other work, the
   ticker's lateness grows with the time the loop waits for a core, and the loop then runs every
   trigger whose timer expired meanwhile in one go: the load average is printed beside the figures.
   ``benchmarks/run.py --replies`` runs this part alone.

The hook logs as it does in a task (a line per ``send_message``); the lines go to /dev/null so that
the tables stay readable, but their cost is measured.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

IMPORT_RUNS = 7
SEND_ROUNDS = 20
SEND_PER_ROUND = 100
ACCOUNT_LIMIT = 300
LATENCY = 0.05
BULK_MESSAGES = 3000
LOOP_MESSAGES = 100
MEMORY_SIZES = (10_000, 100_000)
TRIGGERS = 500
TRIGGER_POLL = 5.0  # the sensor's default is 60 s
TRIGGER_STEP = 4.0  # sandbox seconds per delivery step: enqueued, sent, delivered, read
TICK = 0.005
REPLY_TRIGGERS = int(os.environ.get("BENCH_REPLY_TRIGGERS", 500))
REPLY_POLL_INTERVAL = 2.0
REPLY_SECONDS = 14.0  # each trigger's deadline; half the people answer at REPLY_SECONDS / 2
LATE_TICK = 0.05  # the reply bench lists the ticks later than this (the goal), and when they came

MODULES = {
    "airflow_provider_callbell.operators.callbell": "`CallbellSendMessageOperator`, `CallbellSendMessagesOperator`",
    "airflow_provider_callbell.notifications.callbell": "`CallbellNotifier`",
    "airflow_provider_callbell.sensors.callbell": "`CallbellMessageStatusSensor`",
    "airflow.providers.smtp.notifications.smtp": "SmtpNotifier (official)",
    "airflow.providers.telegram.operators.telegram": "TelegramOperator (official)",
    "airflow.providers.slack.operators.slack": "SlackAPIPostOperator (official)",
    "airflow.providers.slack.notifications.slack": "SlackNotifier (official)",
    "airflow.providers.http.operators.http": "HttpOperator (official)",
}


def _self_time_us(stderr: str) -> int:
    return sum(
        int(line.split("|")[0].split(":")[1])
        for line in stderr.splitlines()
        if line.startswith("import time:")
    )


def import_self_time_ms(module: str | None) -> float | None:
    """Median over runs of the self time of every module imported after ``airflow.sdk``.

    With ``module=None``: the self time of importing ``airflow.sdk`` itself, the reference.
    """
    if module is None:
        code = "import sys; sys.stderr.write('--mark--\\n'); import airflow.sdk"
    else:
        code = f"import airflow.sdk, sys; sys.stderr.write('--mark--\\n'); import {module}"
    totals = []
    for _ in range(IMPORT_RUNS):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
        )
        if proc.returncode != 0:
            return None  # not installed
        totals.append(_self_time_us(proc.stderr.split("--mark--\n", 1)[1]))
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


def canned_server(port: int) -> None:
    """Serve :class:`_Canned` on ``port`` until killed (``--canned-server``: a process of its own)."""
    ThreadingHTTPServer(("127.0.0.1", port), _Canned).serve_forever()


def send_cost() -> dict[str, float]:
    """Per message µs of a bare post and of the hook, wall and CPU: medians of interleaved rounds."""

    port = _free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__)), "--canned-server", str(port)])
    try:
        return _send_cost(f"http://127.0.0.1:{port}/v1")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _send_cost(base: str) -> dict[str, float]:
    import requests

    for _ in range(200):
        try:
            requests.get(base, timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
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

    rounds: dict[str, list[float]] = {"bare": [], "hook": [], "bare_cpu": [], "hook_cpu": []}
    for fn in (bare_send, hook_send):  # warm both connections up
        fn()
    for _ in range(SEND_ROUNDS):
        for fn, name in ((bare_send, "bare"), (hook_send, "hook")):
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(SEND_PER_ROUND):
                fn()
            rounds[name].append((time.perf_counter() - start) / SEND_PER_ROUND * 1e6)
            rounds[f"{name}_cpu"].append((time.process_time() - cpu) / SEND_PER_ROUND * 1e6)
    return {name: statistics.median(values) for name, values in rounds.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SandboxProcess:
    """The Callbell sandbox in a process of its own, so that it does not share the client's GIL."""

    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_callbell.sandbox", "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,  # one line per message: nobody reads them here
            stderr=subprocess.DEVNULL,
        )
        import requests

        for _ in range(200):
            try:
                requests.get(f"{self.url}/_sandbox/messages", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        self.connection = json.dumps(
            {"conn_type": "callbell", "host": f"{self.url}/v1", "password": "sandbox-token"}
        )

    def inspect(self, what: str) -> list[dict[str, Any]]:
        import requests

        items: list[dict[str, Any]] = requests.get(f"{self.url}/_sandbox/{what}", timeout=60).json()[what]
        return items

    def reset(self) -> None:
        import requests

        requests.post(f"{self.url}/_sandbox/reset", json={}, timeout=5).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _generated(count: int, prefix: str) -> Any:
    return ({"to": f"+316{i:08d}", "content": {"text": f"{prefix} {i}"}} for i in range(count))


def throughput() -> dict[str, Any]:
    """Messages per second of ``send_messages`` and of a loop, against 300/s and 50 ms; what arrived."""
    sandbox = SandboxProcess("--rate-limit", str(ACCOUNT_LIMIT), "--latency", str(LATENCY))
    try:
        os.environ["AIRFLOW_CONN_CALLBELL_SANDBOX"] = sandbox.connection
        from airflow_provider_callbell.hooks.callbell import CallbellHook

        hook = CallbellHook("callbell_sandbox")
        hook.send_message("+31612345678", content={"text": "warm-up"})
        sandbox.reset()
        time.sleep(1.1)  # an empty rate window for the bulk run
        start = time.perf_counter()
        results = hook.send_messages(_generated(BULK_MESSAGES, "bulk"))
        bulk_seconds = time.perf_counter() - start
        stored = Counter(m["body"]["content"]["text"] for m in sandbox.inspect("messages"))
        refused = sum(r["status"] == 429 for r in sandbox.inspect("requests"))
        expected = {f"bulk {i}" for i in range(BULK_MESSAGES)}
        sandbox.reset()
        start = time.perf_counter()
        for message in _generated(LOOP_MESSAGES, "loop"):
            hook.send_message(**message)
        loop_seconds = time.perf_counter() - start
    finally:
        sandbox.stop()
    return {
        "bulk_rps": BULK_MESSAGES / bulk_seconds,
        "loop_rps": LOOP_MESSAGES / loop_seconds,
        "failed": sum("error" in r for r in results),
        "lost": len(expected - set(stored)),
        "duplicated": sum(count - 1 for count in stored.values()),
        "refused": refused,
    }


def triggers() -> dict[str, Any]:
    """:data:`TRIGGERS` status triggers in one event loop against the sandbox: stall, rate, outcome."""
    import asyncio

    sandbox = SandboxProcess("--rate-limit", "0", "--status-interval", str(TRIGGER_STEP))
    try:
        os.environ["AIRFLOW_CONN_CALLBELL_SANDBOX"] = sandbox.connection
        from airflow_provider_callbell.hooks.callbell import CallbellHook
        from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger

        sent = CallbellHook("callbell_sandbox").send_messages(_generated(TRIGGERS, "trigger"), max_rps=1e4)
        uuids = [result["uuid"] for result in sent]

        async def warm_up() -> None:  # a triggerer has Airflow's and httpx's modules loaded already
            trigger = CallbellMessageStatusTrigger(
                message_uuid=uuids[0],
                end_time=time.time() + 10,
                target_statuses=("enqueued", "sent", "delivered", "read"),
                callbell_conn_id="callbell_sandbox",
            )
            [event async for event in trigger.run()]

        asyncio.run(warm_up())
        # A full collection rescans every object of the process, Airflow's modules included: 100-200 ms
        # with Airflow loaded, whoever allocates. Frozen, as a long-running process's start-up heap
        # would be; the collections during the run are still timed and reported.
        gc.collect()
        gc.freeze()
        full_gcs: list[float] = []

        def time_full_gcs(phase: str, info: dict[str, Any]) -> None:
            if info["generation"] == 2:
                full_gcs.append(
                    time.thread_time() if phase == "start" else time.thread_time() - full_gcs.pop()
                )

        gc.callbacks.append(time_full_gcs)
        polled_before = len(sandbox.inspect("requests"))

        async def run_all() -> tuple[list[Any], float, float, float]:
            worst = worst_cpu = 0.0
            done = asyncio.Event()

            async def ticker() -> None:
                # Wall lateness includes the time other processes of a shared machine hold the cores;
                # the loop thread's CPU time between two ticks is what the loop itself spent.
                nonlocal worst, worst_cpu
                loop = asyncio.get_running_loop()
                while not done.is_set():
                    expected, cpu = loop.time() + TICK, time.thread_time()
                    await asyncio.sleep(TICK)
                    worst = max(worst, loop.time() - expected)
                    worst_cpu = max(worst_cpu, time.thread_time() - cpu)

            async def one(uuid: str) -> Any:
                trigger = CallbellMessageStatusTrigger(
                    message_uuid=uuid,
                    end_time=time.time() + 120,
                    target_statuses=("read",),
                    poll_interval=TRIGGER_POLL,
                    callbell_conn_id="callbell_sandbox",
                )
                return [event.payload async for event in trigger.run()]

            tick = asyncio.ensure_future(ticker())
            start, cpu = time.perf_counter(), time.thread_time()
            events = await asyncio.gather(*(one(uuid) for uuid in uuids))
            elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
            done.set()
            await tick
            return events, elapsed, worst, worst_cpu, cpu

        events, elapsed, worst, worst_cpu, cpu = asyncio.run(run_all())
        gc.callbacks.remove(time_full_gcs)
        gc.unfreeze()
        polls = len(sandbox.inspect("requests")) - polled_before - 1  # the inspection before counts
    finally:
        sandbox.stop()
    return {
        "worst_stall_ms": worst * 1000,
        "worst_stall_cpu_ms": worst_cpu * 1000,
        "cpu_per_poll_us": cpu / max(polls, 1) * 1e6,
        "full_gcs": len(full_gcs),
        "longest_full_gc_ms": max(full_gcs, default=0.0) * 1000,
        "polls": polls,
        "rps": polls / elapsed,
        "seconds": elapsed,
        "read": sum(
            len(e) == 1 and e[0]["event"] == "status" and e[0]["message"]["status"] == "read" for e in events
        ),
    }


def _rss_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since the last reset) of this process."""
    with open("/proc/self/status") as status:
        found = re.search(rf"{field}:\s+(\d+) kB", status.read())
    return int(found.group(1)) * 1024 if found else 0


def _held_bytes(results: list[dict[str, Any]]) -> int:
    """The size of the results list and everything it holds, each object counted once."""
    seen: set[int] = set()
    total = 0
    for obj in (results, *results, *(v for r in results for kv in r.items() for v in kv)):
        if id(obj) not in seen:
            seen.add(id(obj))
            total += sys.getsizeof(obj)
    return total


def memory_child(count: int) -> None:
    """In a fresh process: peak RSS growth over one ``send_messages`` of ``count`` messages."""
    from airflow_provider_callbell.hooks.callbell import CallbellHook

    hook = CallbellHook("callbell_bench")
    hook.send_messages(_generated(2000, "warm-up"), max_rps=1e4)  # pool, threads, code paths
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS: the warm-up's peak is forgotten
    before = _rss_bytes("VmRSS")
    results = hook.send_messages(_generated(count, "memory"), max_rps=1e4)
    peak = _rss_bytes("VmHWM")
    print(
        json.dumps(
            {
                "growth": peak - before,
                "held": _held_bytes(results),
                "failed": sum("error" in r for r in results),
            }
        )
    )


def memory() -> list[tuple[int, dict[str, Any]]]:
    """Run :func:`memory_child` for each size against the canned server, served from this process."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.daemon_threads = True
    server.request_queue_size = 128
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "AIRFLOW_CONN_CALLBELL_BENCH": json.dumps(
            {"conn_type": "callbell", "host": f"http://127.0.0.1:{server.server_port}/v1", "password": "t"}
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    measured = []
    for count in MEMORY_SIZES:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__)), "--memory-child", str(count)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        measured.append((count, json.loads(proc.stdout.strip().splitlines()[-1])))
    server.shutdown()
    return measured


def reply_triggers(shared_ssl_context: bool = False) -> dict[str, Any]:
    """Run REPLY_TRIGGERS reply triggers in one event loop against the sandbox; count and time them.

    ``shared_ssl_context`` hands every ``httpx.AsyncClient`` one ``ssl.SSLContext`` made beforehand
    (the transport already shares one per process; kept to show that it makes no difference).
    As in the status triggers' part, a triggerer's modules are loaded first (one warm-up trigger) and
    the start-up heap is frozen; the stall is measured twice: wall lateness of a 10 ms ticker, which
    includes the time other processes of a shared machine hold the cores, and the loop thread's own
    CPU time between two ticks, which is what the triggers themselves cost the loop.
    """
    import asyncio
    import ssl

    import httpx
    import requests

    real_client = httpx.AsyncClient
    if shared_ssl_context:
        httpx.AsyncClient = functools.partial(real_client, verify=ssl.create_default_context())  # type: ignore[misc]

    sandbox = SandboxProcess("--rate-limit", "0")
    polls = Counter[str]()
    real_result = None
    try:
        os.environ["AIRFLOW_CONN_CALLBELL_REPLIES"] = sandbox.connection
        from airflow_provider_callbell import replies
        from airflow_provider_callbell.hooks.callbell import CallbellHook
        from airflow_provider_callbell.triggers import callbell as triggers

        phones = [f"+316{i:08d}" for i in range(REPLY_TRIGGERS)]
        questions = CallbellHook("callbell_replies").send_messages(
            {"to": phone, "content": {"text": "Publish the numbers? Reply YES or NO"}} for phone in phones
        )

        async def warm_up() -> None:  # a triggerer has Airflow's and httpx's modules loaded already
            trigger = triggers.CallbellReplyTrigger(
                to=phones[0],
                end_time=time.time() + 0.5,
                after_message_uuid=questions[0]["uuid"],
                choices=["yes", "no"],
                poll_interval=0.2,
                callbell_conn_id="callbell_replies",
            )
            [event async for event in trigger.run()]

        asyncio.run(warm_up())
        real_result = replies.ReplyScan.result

        def counted(scan: Any) -> Any:
            polls[scan.after_uuid or ""] += 1
            return real_result(scan)

        replies.ReplyScan.result = counted  # type: ignore[method-assign]  # count polls, decide the same
        answered = phones[::2]
        answered_at: dict[str, float] = {}
        seen_at: dict[str, float] = {}

        def answer_midway() -> None:
            time.sleep(REPLY_SECONDS / 2)
            with requests.Session() as session:
                for phone in answered:
                    answered_at[phone] = time.monotonic()
                    session.post(
                        f"{sandbox.url}/_sandbox/inbound", json={"from": phone, "text": "Yes"}, timeout=10
                    )

        gc.collect()
        gc.freeze()
        full_gcs: list[float] = []

        def time_full_gcs(phase: str, info: dict[str, Any]) -> None:
            if info["generation"] == 2:
                full_gcs.append(
                    time.thread_time() if phase == "start" else time.thread_time() - full_gcs.pop()
                )

        gc.callbacks.append(time_full_gcs)
        longest_step = [0.0]
        steps = [0]  # callbacks run so far: those between two ticks are what a late tick waited behind
        real_step = asyncio.events.Handle._run

        def timed_step(handle: Any) -> None:  # one callback of the loop: a trigger's step between awaits
            cpu = time.thread_time()
            real_step(handle)
            steps[0] += 1
            longest_step[0] = max(longest_step[0], time.thread_time() - cpu)

        late: list[tuple[float, float, float, int]] = []  # seconds after the start, wall, CPU, steps

        async def run_all() -> tuple[list[str], float, float, float]:
            stall = stall_cpu = 0.0
            done = asyncio.Event()

            async def ticker() -> None:
                nonlocal stall, stall_cpu
                while not done.is_set():
                    before, cpu, stepped = time.monotonic(), time.thread_time(), steps[0]
                    await asyncio.sleep(0.01)
                    wall, cpu = time.monotonic() - before - 0.01, time.thread_time() - cpu
                    stall, stall_cpu = max(stall, wall), max(stall_cpu, cpu)
                    if max(wall, cpu) > LATE_TICK:
                        late.append((before - started, wall, cpu, steps[0] - stepped))

            async def wait(phone: str, question: str) -> str:
                trigger = triggers.CallbellReplyTrigger(
                    to=phone,
                    end_time=end_time,
                    after_message_uuid=question,
                    choices=["yes", "no"],
                    poll_interval=REPLY_POLL_INTERVAL,
                    callbell_conn_id="callbell_replies",
                )
                async for event in trigger.run():
                    seen_at[phone] = time.monotonic()
                    return str(event.payload["event"])
                return "none"

            # A triggerer's loop runs for days: what its first request pays once (anyio's and
            # httpcore's set-up on this loop) is paid here, before the measurement starts.
            await warm_up()
            polls.clear()
            before[0] = len(sandbox.inspect("requests"))  # count only what the measured triggers ask
            end_time = time.time() + REPLY_SECONDS
            asyncio.events.Handle._run = timed_step  # type: ignore[method-assign]
            started, loop_cpu = time.monotonic(), time.thread_time()
            tick = asyncio.create_task(ticker())
            events = await asyncio.gather(
                *(wait(p, q["uuid"]) for p, q in zip(phones, questions, strict=True))
            )
            loop_cpu = time.thread_time() - loop_cpu
            done.set()
            await tick
            return events, stall, stall_cpu, loop_cpu

        before = [0]
        threading.Thread(target=answer_midway, daemon=True).start()
        load_before = os.getloadavg()[0]
        try:
            events, stall, stall_cpu, loop_cpu = asyncio.run(run_all())
        finally:
            asyncio.events.Handle._run = real_step  # type: ignore[method-assign]
        gc.callbacks.remove(time_full_gcs)
        gc.unfreeze()
        seen = sandbox.inspect("requests")[before[0] :]
    finally:
        if real_result is not None:
            replies.ReplyScan.result = real_result  # type: ignore[method-assign]
        httpx.AsyncClient = real_client  # type: ignore[misc]
        sandbox.stop()
    lookups = sum("/contacts/phone/" in r["path"] for r in seen)
    pages = sum(r["path"].endswith("/messages") for r in seen)
    delays = sorted(seen_at[p] - answered_at[p] for p in answered if p in answered_at)
    return {
        "polls": sum(polls.values()),
        "lookups": lookups,
        "pages": pages,
        "other": len(seen) - lookups - pages,
        "errors": sum(r["status"] != 200 for r in seen),
        "events": Counter(events),
        "stall_ms": stall * 1000,
        "stall_cpu_ms": stall_cpu * 1000,
        "longest_step_ms": longest_step[0] * 1000,
        "loop_cpu": loop_cpu,
        "late": late,
        "full_gcs": len(full_gcs),
        "longest_full_gc_ms": max(full_gcs, default=0.0) * 1000,
        "load": (load_before, os.getloadavg()[0]),
        "delay_median": statistics.median(delays) if delays else float("nan"),
        "delay_max": delays[-1] if delays else float("nan"),
    }


def _report_replies(emit: Any) -> None:
    runs = [reply_triggers(), reply_triggers(shared_ssl_context=True)]
    emit(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()}"
    )
    emit()
    emit(
        f"| {REPLY_TRIGGERS} reply triggers in one event loop, poll every {REPLY_POLL_INTERVAL:g} s "
        f"for {REPLY_SECONDS:g} s | as shipped | one SSL context per process |"
    )
    emit("| --- | ---: | ---: |")

    def row(label: str, cell: Any) -> None:
        emit(f"| {label} | {' | '.join(cell(run) for run in runs)} |")

    row("polls", lambda run: str(run["polls"]))
    row("contact look-ups (first poll of each trigger)", lambda run: str(run["lookups"]))
    row("conversation pages read", lambda run: str(run["pages"]))
    row(
        "requests per poll, look-ups included",
        lambda run: f"{(run['lookups'] + run['pages'] + run['other']) / max(run['polls'], 1):.2f}",
    )
    row("conversation pages per poll (goal: 1)", lambda run: f"{run['pages'] / max(run['polls'], 1):.2f}")
    row("other requests, non-200 answers", lambda run: f"{run['other']}, {run['errors']}")
    row("worst event-loop stall, wall (10 ms ticker)", lambda run: f"{run['stall_ms']:.0f} ms")
    row(
        "worst event-loop stall, the loop's own CPU time between two ticks",
        lambda run: f"{run['stall_cpu_ms']:.1f} ms",
    )
    row(
        "longest single step of the loop, CPU time (goal < 50 ms)",
        lambda run: f"{run['longest_step_ms']:.1f} ms",
    )
    row(
        "full garbage collections during the run, the longest (CPU time)",
        lambda run: f"{run['full_gcs']}, {run['longest_full_gc_ms']:.1f} ms",
    )
    row("the loop's CPU time over the run", lambda run: f"{run['loop_cpu']:.1f} s")
    row(
        f"ticks over {LATE_TICK * 1000:.0f} ms late (wall or CPU): count, at (s after the start)",
        lambda run: f"{len(run['late'])}, " + " ".join(f"{t:.1f}" for t, *_ in run["late"][:12]),
    )
    row(
        "the worst tick (CPU): at, the loop steps it waited behind",
        lambda run: "{:.1f} s, {} steps".format(
            *(max(run["late"], key=lambda late: late[2])[0::3] if run["late"] else (0.0, 0))
        ),
    )
    row("machine load average (1 min) before / after", lambda run: "{:.1f} / {:.1f}".format(*run["load"]))
    row(
        f"answer seen after (median / max), {REPLY_TRIGGERS // 2} answers",
        lambda run: f"{run['delay_median']:.2f} s / {run['delay_max']:.2f} s",
    )
    row("events", lambda run: ", ".join(f"{n} {kind}" for kind, n in sorted(run["events"].items())))


def _report_memory(emit: Any) -> None:
    emit(
        "| `send_messages` in a fresh process | peak RSS growth (MiB) | results held (MiB) | ratio | per message (bytes) |"
    )
    emit("| --- | ---: | ---: | ---: | ---: |")
    for count, m in memory():
        failed = f" ({m['failed']} failed)" if m["failed"] else ""
        emit(
            f"| {count:,} messages{failed} | {m['growth'] / 2**20:.1f} | {m['held'] / 2**20:.1f} "
            f"| {m['growth'] / m['held']:.2f} | {m['growth'] / count:.0f} |"
        )


def main() -> None:
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())  # the hook's log lines, written but not shown
    if sys.argv[1:2] == ["--replies"]:
        _report_replies(functools.partial(print, file=report))
        return
    if sys.argv[1:2] == ["--memory"]:
        _report_memory(functools.partial(print, file=report))
        return
    _report(report)


def _report(out: Any) -> None:
    emit = functools.partial(print, file=out)  # the real stdout, not the log lines
    emit(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )
    emit()
    sdk_ms = import_self_time_ms(None) or 1.0
    emit(f"| import over `airflow.sdk` ({sdk_ms:.0f} ms) | added self time (ms) | share of `airflow.sdk` |")
    emit("| --- | ---: | ---: |")
    for module, label in MODULES.items():
        ms = import_self_time_ms(module)
        cells = "not installed | -" if ms is None else f"{ms:.1f} | {ms / sdk_ms:.1%}"
        emit(f"| {label} | {cells} |")
    emit()
    cost = send_cost()
    emit("| per message, loopback | µs | ratio | CPU µs | CPU ratio |")
    emit("| --- | ---: | ---: | ---: | ---: |")
    emit(f"| bare `requests.Session.post` | {cost['bare']:.0f} | 1.00 | {cost['bare_cpu']:.0f} | 1.00 |")
    emit(
        f"| `CallbellHook.send_message` | {cost['hook']:.0f} | {cost['hook'] / cost['bare']:.2f} "
        f"| {cost['hook_cpu']:.0f} | {cost['hook_cpu'] / cost['bare_cpu']:.2f} |"
    )
    emit()
    deferred = triggers()
    emit(f"| {TRIGGERS} deferred status triggers, one event loop, poll every {TRIGGER_POLL:g} s | value |")
    emit("| --- | ---: |")
    emit(f"| worst event-loop stall, wall (goal < 50 ms) | {deferred['worst_stall_ms']:.1f} ms |")
    emit(f"| worst event-loop stall, the loop's own CPU time | {deferred['worst_stall_cpu_ms']:.1f} ms |")
    emit(f"| status requests per second | {deferred['rps']:.0f} |")
    emit(f"| the loop's CPU time per poll (ticker included) | {deferred['cpu_per_poll_us']:.0f} µs |")
    emit(
        f"| full garbage collections during the run, the longest | {deferred['full_gcs']}, "
        f"{deferred['longest_full_gc_ms']:.0f} ms |"
    )
    emit(
        f"| requests, seconds until the last trigger fired | {deferred['polls']}, {deferred['seconds']:.1f} s |"
    )
    emit(f"| triggers that fired `read` | {deferred['read']} of {TRIGGERS} |")
    emit()
    run = throughput()
    emit(
        f"| server at {ACCOUNT_LIMIT} requests/s, {LATENCY * 1000:.0f} ms per answer | messages/s "
        "| share of the limit | ratio |"
    )
    emit("| --- | ---: | ---: | ---: |")
    emit(
        f"| loop of `send_message`, {LOOP_MESSAGES} messages | {run['loop_rps']:.1f} "
        f"| {run['loop_rps'] / ACCOUNT_LIMIT:.1%} | 1.0 |"
    )
    emit(
        f"| `send_messages`, {BULK_MESSAGES} messages, defaults | {run['bulk_rps']:.1f} "
        f"| {run['bulk_rps'] / ACCOUNT_LIMIT:.1%} | {run['bulk_rps'] / run['loop_rps']:.1f} |"
    )
    emit()
    emit(
        f"`send_messages`: {run['failed']} failed, {run['lost']} lost, {run['duplicated']} duplicated, "
        f"{run['refused']} requests answered 429."
    )
    emit()
    _report_memory(emit)
    emit()
    _report_replies(emit)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--canned-server"]:
        canned_server(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--triggers"]:  # this part alone
        print(json.dumps(triggers()))
    else:
        main()
