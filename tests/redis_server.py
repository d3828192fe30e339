"""A throwaway ``redis-server`` for the tests of the shared rate limit (Debian's package, no service).

Each instance listens on a free loopback port, keeps nothing on disk (its directory is the test's
temporary one), and runs in a process group of its own, so that :meth:`RedisServer.stop` ends it and
anything it started even when the test is interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

#: What a test says when it cannot run: the make targets install the package (scripts/install_redis.sh).
MISSING = (
    "redis-server is not installed: `make pytest` installs it with apt (scripts/install_redis.sh), "
    "or run `apt-get install redis-server`"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, in ``directory``, until :meth:`stop`."""

    def __init__(self, directory: Path, port: int | None = None, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(MISSING)
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                executable,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
                *(["--requirepass", password] if password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends it whatever happened
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                answer = conn.recv(64)
                return answer.startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url)

    def dump(self) -> dict[bytes, object]:
        """Every key and what it holds (strings and lists), to look for what must never be stored."""
        client = self.client()
        held: dict[bytes, object] = {}
        for key in client.scan_iter():
            kind = client.type(key)
            held[key] = client.lrange(key, 0, -1) if kind == b"list" else client.get(key)
        return held

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
