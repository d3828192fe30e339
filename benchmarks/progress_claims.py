"""Measure what the progress Variable's write-ahead claims cost a lone bulk send.

    .venv/bin/python benchmarks/progress_claims.py [ROUNDS] [VARIABLE_SECONDS]

Each round sends :data:`MESSAGES` messages with ``CallbellHook.send_messages`` and its defaults
(285 per second) against the sandbox (a process of its own, 300 requests per second, 50 ms per
answer), twice, side by side: without progress, and with a ``VariableProgress`` whose Variable takes
``VARIABLE_SECONDS`` (default 0.02) for every get and set, as a round trip to Airflow's API server
does. With progress, each block of 500 messages is claimed (a get and a set) before any of it starts.
It prints messages per second, as a share of the 300/s limit, and the Variable writes.

To compare with the code before the claims, run it with ``PYTHONPATH`` set to a checkout of that code.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # PYTHONPATH may name other code

from benchmarks.run import ACCOUNT_LIMIT, LATENCY, SandboxProcess, _generated

MESSAGES = 3000


class SlowVariables(dict[str, str]):
    """``airflow.sdk.Variable``'s three calls, each taking ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.writes = 0

    def get(self, key: str, default: Any = None, deserialize_json: bool = False) -> Any:  # type: ignore[override]
        time.sleep(self.delay)
        return super().get(key, default)

    def set(self, key: str, value: str, description: str | None = None, serialize_json: bool = False) -> None:
        time.sleep(self.delay)
        self[key] = value
        self.writes += 1

    def delete(self, key: str) -> None:
        time.sleep(self.delay)
        self.pop(key, None)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    sandbox = SandboxProcess("--rate-limit", str(ACCOUNT_LIMIT), "--latency", str(LATENCY))
    try:
        os.environ["AIRFLOW_CONN_CALLBELL_SANDBOX"] = sandbox.connection
        from airflow_provider_callbell import progress
        from airflow_provider_callbell.hooks.callbell import CallbellHook

        variables = SlowVariables(delay)
        progress.Variable = variables  # type: ignore[assignment,misc]
        hook = CallbellHook("callbell_sandbox")
        hook.send_message("+31612345678", content={"text": "warm-up"})
        print(
            f"code: {progress.__file__}; Variable calls take {delay * 1000:.0f} ms; os.getloadavg() = "
            f"{os.getloadavg()[0]:.1f}"
        )
        for round_ in range(rounds):
            for with_progress in (False, True):
                sandbox.reset()
                time.sleep(1.1)  # an empty rate window
                store = progress.VariableProgress(f"bench/{round_}") if with_progress else None
                variables.writes = 0
                start = time.perf_counter()
                results = hook.send_messages(_generated(MESSAGES, "bench"), progress=store)
                seconds = time.perf_counter() - start
                stored = len(sandbox.inspect("messages"))
                print(
                    json.dumps(
                        {
                            "progress": with_progress,
                            "messages_per_second": round(MESSAGES / seconds, 1),
                            "share_of_limit": round(MESSAGES / seconds / ACCOUNT_LIMIT, 3),
                            "variable_writes": variables.writes,
                            "failed": sum("error" in r for r in results),
                            "stored": stored,
                        }
                    )
                )
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
