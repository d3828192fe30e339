"""Constants and helpers the unit tests share; fixtures live in ``conftest.py`` files only."""

from __future__ import annotations

import json
import queue
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping

    import pytest

TOKEN = "test-token-4f1c9e"
BASE_URL = "https://api.callbell.eu/v1"
SEND_URL = f"{BASE_URL}/messages/send"
UUID = "adf3d1216d4c4dcd908199d6700f2381"


def set_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str = "callbell_default", **fields: object
) -> None:
    """Define an Airflow connection through its environment variable, as users do in tests."""
    conn = {"conn_type": "callbell", "password": TOKEN, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def read_lines_in_background(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """Queue the process's stdout lines, so the test can wait for each with a timeout."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


class Waits(list):
    """Records the waits the policy asks for instead of sleeping them, and advances a fake clock."""

    now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Variables(dict):
    """Stands in for ``airflow.sdk.Variable``: the same three calls, kept in this dict."""

    def get(self, key: str, default: Any = None, deserialize_json: bool = False) -> Any:  # type: ignore[override]
        if key not in self:
            return default
        return json.loads(self[key]) if deserialize_json else self[key]

    def set(self, key: str, value: Any, description: str | None = None, serialize_json: bool = False) -> None:
        self[key] = json.dumps(value) if serialize_json else value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def assert_valid_body(body: Mapping[str, Any]) -> None:
    """A body Callbell can take: strict JSON (no NaN), UTF-8, exact built-in types, no nulls."""
    text = json.dumps(body, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates
    assert json.loads(text) == body  # exact built-in types: nothing serialises differently
    assert None not in body.values()


class FakeAirflowAPI:
    """Airflow's REST API for one HITL request, served on loopback: ``POST /auth/token`` and
    ``GET``/``PATCH .../hitlDetails``, as Airflow 3.3 answers them (201 token, 404 before the task
    asked, 409 once answered, 400 for an option it does not offer, 403 for a user outside
    ``assigned_users``). Real HTTP, so the sync (requests) and async (httpx) clients both reach it.

    ``detail`` is the request as ``GET`` returns it (``None``: not asked yet); ``patches`` and
    ``logins`` record what came in; ``state`` is the HITL task's state.
    """

    PASSWORD = "fake-airflow-password-77"

    def __init__(
        self, options: list[str], *, multiple: bool = False, assigned: list[str] | None = None
    ) -> None:
        import datetime as dt
        import http.server

        self.detail: dict[str, Any] | None = {
            "options": options,
            "subject": "Publish the report?",
            "body": None,
            "defaults": None,
            "multiple": multiple,
            "params": {},
            "assigned_users": [{"id": user, "name": user} for user in assigned or []],
            "created_at": (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)).isoformat(),
            "responded_by_user": None,
            "responded_at": None,
            "chosen_options": None,
            "params_input": {},
            "response_received": False,
            "task_instance": {"state": "awaiting_input", "task_id": "approve"},
        }
        self.patches: list[dict[str, Any]] = []
        self.patch_failures: list[int] = []  # statuses the next PATCHes answer with, e.g. [503]
        self.logins: list[dict[str, Any]] = []
        self.tokens_seen: list[str | None] = []
        self.user = "hitl-bridge"
        self.token = "fake-airflow-token-0b9d3c2a"
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")

            def do_POST(self) -> None:
                body = self._body()
                fake.logins.append(body)
                if body != {"username": fake.user, "password": fake.PASSWORD}:
                    self._answer(401, {"detail": "Invalid credentials"})
                    return
                self._answer(201, {"access_token": fake.token})

            def _authorized(self) -> bool:
                fake.tokens_seen.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._answer(401, {"detail": "Invalid token"})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if fake.detail is None:
                    self._answer(404, {"detail": "Human-in-the-loop detail does not exist"})
                    return
                self._answer(200, fake.detail)

            def do_PATCH(self) -> None:
                if not self._authorized():
                    return
                body = self._body()
                fake.patches.append(body)
                if fake.patch_failures:
                    self._answer(fake.patch_failures.pop(0), {"detail": "unavailable"})
                    return
                detail = fake.detail
                if detail is None:
                    self._answer(404, {"detail": "no request"})
                    return
                if detail["response_received"]:
                    self._answer(409, {"detail": "already updated"})
                    return
                assigned = {user["id"] for user in detail["assigned_users"]}
                if assigned and fake.user not in assigned:
                    self._answer(403, {"detail": f"User={fake.user} is not a respondent"})
                    return
                if set(body["chosen_options"]) - set(detail["options"]):
                    self._answer(400, {"detail": "Invalid options"})
                    return
                fake.answer(body["chosen_options"], fake.user)
                self._answer(
                    200,
                    {
                        "responded_by": {"id": fake.user, "name": fake.user},
                        "responded_at": "2026-12-03T12:00:00Z",
                        "chosen_options": body["chosen_options"],
                        "params_input": body.get("params_input") or {},
                    },
                )

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, chosen: list[str], user: str | None) -> None:
        """Record an answer, as the UI (or the bridge's PATCH) does; the task resumes."""
        assert self.detail is not None
        self.detail.update(
            response_received=True,
            chosen_options=chosen,
            responded_by_user=None if user is None else {"id": user, "name": user},
            responded_at="2026-12-03T12:00:00Z",
        )
        self.detail["task_instance"]["state"] = "scheduled"

    def connection_json(self, **fields: Any) -> str:
        return json.dumps(
            {
                "conn_type": "http",
                "host": self.base_url,
                "login": self.user,
                "password": self.PASSWORD,
                **fields,
            }
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
