"""``python -m airflow_provider_callbell.sandbox``: run the sandbox in a terminal next to Airflow.

It prints an ``export AIRFLOW_CONN_CALLBELL_DEFAULT=...`` line to paste into the shell that runs
Airflow (or Python), the URL it listens on (``--port 0`` picks a free port), then one line per
accepted message and per customer answer, so a developer can watch what their DAGs send without a
Callbell account. ``--auto-reply TEXT`` makes every recipient answer TEXT (after
``--auto-reply-delay`` seconds), so a DAG waiting for a reply can be demonstrated without typing one.
``--host 0.0.0.0 --allowed-host NAME`` serves other machines or containers that call it NAME (a
trusted network only: see ``--help``). Ctrl-C or SIGTERM stop it cleanly with exit code 0; a port that
cannot be bound is a one-line error, exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from typing import TYPE_CHECKING

from airflow_provider_callbell.sandbox.guard import MAX_BODY_BYTES
from airflow_provider_callbell.sandbox.server import CallbellSandbox

if TYPE_CHECKING:
    from collections.abc import Sequence


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; one whose help already says it, in words, is left so."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default: " in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_callbell.sandbox",
        description="A local stand-in for the Callbell REST API v1.",
        epilog=(
            "It answers only requests whose Host header names it (127.0.0.1, localhost or [::1] at its "
            "port, its --host, or an --allowed-host), refuses state-changing requests from other sites' "
            f"pages, and reads no body over {MAX_BODY_BYTES // 2**20} MiB. Listen on another address than loopback only on a "
            "network you trust: nothing but the token guards the API, and the inbox has no login."
        ),
        formatter_class=_HelpWithDefaults,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every one (trusted networks)"
    )
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument(
        "--allowed-host",
        metavar="NAME",
        action="append",
        default=[],
        help="another name to answer to, NAME or NAME:PORT (e.g. a docker-compose service); repeatable "
        "(default: loopback names and --host only)",
    )
    parser.add_argument("--token", default="sandbox-token", help="the bearer token accepted")
    parser.add_argument("--status-interval", type=float, default=1.0, help="seconds per delivery step")
    parser.add_argument("--rate-limit", type=int, default=300, help="requests per second; 0 disables")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of connections dropped")
    parser.add_argument(
        "--seed", type=int, default=None, help="makes injected faults reproducible (default: random)"
    )
    parser.add_argument(
        "--auto-reply",
        metavar="TEXT",
        default=None,
        help="answer every outgoing message with TEXT (default: no auto-reply)",
    )
    parser.add_argument(
        "--auto-reply-delay", metavar="S", type=float, default=0.0, help="seconds before each auto-reply"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit code."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)  # flushes after every line
    handler.setFormatter(logging.Formatter("[sandbox] %(message)s"))
    logger = logging.getLogger("airflow_provider_callbell.sandbox")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = CallbellSandbox(
        token=args.token,
        host=args.host,
        port=args.port,
        allowed_hosts=args.allowed_host,
        status_interval=args.status_interval,
        rate_limit=args.rate_limit or None,
        latency=args.latency,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        seed=args.seed,
        auto_reply=args.auto_reply,
        auto_reply_delay=args.auto_reply_delay,
    )
    try:
        sandbox.start()
    except OSError as err:  # the port is taken, or the host is not an address of this machine
        print(
            f"Callbell sandbox: cannot listen on {args.host}:{args.port}: {err.strerror or err}; "
            "choose another --port (--port 0 picks a free one)",
            file=sys.stderr,
        )
        return 1
    try:
        print(f"export AIRFLOW_CONN_CALLBELL_DEFAULT={shlex.quote(sandbox.connection_json)}", flush=True)
        print(f"Callbell sandbox listening on {sandbox.url}", flush=True)
        print(f"Web inbox: {sandbox.url.removesuffix('/v1')}/", flush=True)
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
