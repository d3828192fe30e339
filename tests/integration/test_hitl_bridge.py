"""Answering Human-in-the-loop tasks from the phone, in one real deployment (Airflow 3.3).

An API server, a scheduler, a DAG processor and a triggerer share a throwaway AIRFLOW_HOME; the
simple auth manager has two real users (``hitl-bridge``, the ``airflow_api`` connection's service
account with the role ``user`` the docs ask for, and ``alice``, an admin who answers in the "UI"). Three runs go at once:

- ``phone`` (``example_callbell_hitl``): the question reaches the sandbox through the notifier, a
  reply from another number is ignored, a wrong reply is reprompted once, "yes" records
  ``["Approve"]`` as hitl-bridge, the phone gets its confirmation and ``publish`` runs;
- ``ui`` (``example_callbell_hitl``): alice answers in Airflow first; the bridge ends without
  submitting and says nothing to the phone;
- ``choose`` (``callbell_hitl_choose``, a ``HITLOperator`` with ``multiple=True`` and
  ``assigned_users``): alice's phone answers "1 and 3" the moment the question arrives, before the
  task parks (the 3.3.2 race window: the bridge must hold the answer until the task has waited),
  which records ``["Email", "Slack"]``; a phone mapped to a user outside ``assigned_users`` is
  refused before it waits (its bridge fails without reading any conversation).

Every process is stopped at the end, whatever happens (``Services.running``).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import requests

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS
from tests.integration.helpers import ROOT, WAIT_SECONDS, Services, free_port

if TYPE_CHECKING:
    from airflow_provider_callbell.sandbox import CallbellSandbox

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="Human-in-the-loop operators came with Airflow 3.1"),
]

EXAMPLE = "example_callbell_hitl"
CHOOSE = "callbell_hitl_choose"
APPROVER = "+31612345678"
UI_APPROVER = "+31622222222"
STRANGER = "+31699999999"
ALICE_PHONE = "+31633333333"
MALLORY_PHONE = "+31644444444"


class API:
    """Airflow's REST API as alice sees it."""

    def __init__(self, base_url: str, password: str) -> None:
        self.base_url = base_url
        answer = requests.post(
            f"{base_url}/auth/token", json={"username": "alice", "password": password}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base_url + "/api/v2" + path, headers=self.headers, timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(
            method, self.base_url + "/api/v2" + path, headers=self.headers, timeout=30, **kwargs
        )
        assert answer.ok, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def ti(self, dag_id: str, run_id: str, task_id: str) -> str:
        return f"/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}"

    def state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        state: str | None = self.call("GET", self.ti(dag_id, run_id, task_id))["state"]
        return state

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = self.ti(dag_id, run_id, task_id) + "/xcomEntries/return_value"
        return self.call("GET", path, params={"deserialize": "true"})["value"]

    def hitl(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = self.call("GET", self.ti(dag_id, run_id, task_id) + "/-1/hitlDetails")
        return detail


def texts_to(callbell_sandbox: CallbellSandbox, number: str) -> list[str]:
    return [m["body"]["content"]["text"] for m in callbell_sandbox.messages if m["body"]["to"] == number]


def test_hitl_answered_from_the_phone_under_a_real_scheduler(
    tmp_path: Path, callbell_sandbox: CallbellSandbox
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{EXAMPLE}.py").symlink_to(ROOT / "example_dags" / f"{EXAMPLE}.py")
    (dags / "callbell_hitl_bridge.py").symlink_to(Path(__file__).parent / "dags" / "callbell_hitl_bridge.py")
    passwords = {"hitl-bridge": secrets.token_urlsafe(16), "alice": secrets.token_urlsafe(16)}
    (tmp_path / "passwords.json").write_text(json.dumps(passwords))
    home = tmp_path / "home"
    home.mkdir()
    services = Services(home, callbell_sandbox, dags, extra_components=(("triggerer",),))
    base_url = f"http://127.0.0.1:{services.api_port}"
    services.env.update(
        {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "hitl-bridge:user,alice:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_AIRFLOW_API": json.dumps(
                {
                    "conn_type": "http",
                    "host": base_url,
                    "login": "hitl-bridge",
                    "password": passwords["hitl-bridge"],
                }
            ),
        }
    )
    started = time.monotonic()
    with services.running(reserialize=False):
        up = time.monotonic()
        api = API(base_url, passwords["alice"])
        script = Script(callbell_sandbox, api, services)
        for dag_id in (CHOOSE, EXAMPLE):  # parsed by the DAG processor, which started with the rest
            script.wait(f"{dag_id} to be parsed", lambda d=dag_id: api.get(f"/dags/{d}").ok)
        for dag_id, run_id, day, conf in (
            (CHOOSE, "choose", None, {}),
            (EXAMPLE, "phone", "2026-01-01T00:00:00Z", {}),
            (EXAMPLE, "ui", "2026-01-02T00:00:00Z", {"approver": UI_APPROVER}),
        ):
            api.call(
                "POST",
                f"/dags/{dag_id}/dagRuns",
                json={"dag_run_id": run_id, "logical_date": day, "conf": conf},
            )

        triggered = time.monotonic()
        script.run()
        answered = time.monotonic()
        logs = services.logs()
        mallory_log = "\n".join(
            path.read_text(errors="replace") for path in (home / "logs").rglob("*answer_as_mallory*/*.log")
        )
        results = {
            "phone": (
                api.hitl(EXAMPLE, "phone", "approve_publication"),
                api.xcom(EXAMPLE, "phone", "answer_from_phone"),
            ),
            "ui": (
                api.hitl(EXAMPLE, "ui", "approve_publication"),
                api.xcom(EXAMPLE, "ui", "answer_from_phone"),
            ),
            "choose": (
                api.hitl(CHOOSE, "choose", "choose_channels"),
                api.xcom(CHOOSE, "choose", "answer_as_alice"),
            ),
        }
        states = {
            (run_id, task_id): api.state(dag_id, run_id, task_id)
            for dag_id, run_id, task_id in (
                (EXAMPLE, "phone", "publish"),
                (EXAMPLE, "ui", "publish"),
                (CHOOSE, "choose", "choose_channels"),
                (CHOOSE, "choose", "announce"),
                (CHOOSE, "choose", "answer_as_mallory"),
            )
        }
        announced = api.xcom(CHOOSE, "choose", "announce")
    print(
        f"HITL bridge deployment: {time.monotonic() - started:.0f} s in all: database and start "
        f"{up - started:.0f} s, DAGs parsed {triggered - up:.0f} s, the three runs {answered - triggered:.0f} s"
    )

    # The phone's answer, after one ignored stranger and one reprompt.
    detail, bridge = results["phone"]
    assert (detail["chosen_options"], detail["responded_by_user"]["id"]) == (["Approve"], "hitl-bridge"), logs
    assert bridge["outcome"] == "submitted"
    assert bridge["from"] == APPROVER
    assert bridge["text"] == "yes"
    assert bridge["chosen_options"] == ["Approve"]
    assert bridge["responded_by"] == "hitl-bridge"
    question, reprompt, confirmation = texts_to(callbell_sandbox, APPROVER)
    assert question.startswith(f"🙋 DAG {EXAMPLE}: task approve_publication needs your input (run phone)")
    assert reprompt == (
        "Sorry, that is not an answer to “Publish the sales numbers for 2026-01-01?”. "
        "Please reply with one of: 1 Approve, 2 Reject (or yes / no)."
    )
    assert confirmation == f"Recorded: Approve for {EXAMPLE} / approve_publication"
    assert texts_to(callbell_sandbox, STRANGER) == []
    assert states[("phone", "publish")] == "success"

    # Answered in the UI first: the bridge ends, submits nothing, tells the phone nothing.
    detail, bridge = results["ui"]
    assert (detail["chosen_options"], detail["responded_by_user"]["id"]) == (["Reject"], "alice")
    assert bridge["outcome"] == "answered_in_airflow"
    assert bridge["chosen_options"] == ["Reject"]
    assert bridge["responded_by"] == "alice"
    assert bridge["from"] is None
    assert len(texts_to(callbell_sandbox, UI_APPROVER)) == 1  # the question only
    assert states[("ui", "publish")] == "skipped"

    # Several options, answered inside the race window, and a phone outside assigned_users.
    detail, bridge = results["choose"]
    assert (detail["chosen_options"], detail["responded_by_user"]["id"]) == (
        ["Email", "Slack"],
        "hitl-bridge",
    )
    assert bridge["outcome"] == "submitted"
    assert bridge["from"] == ALICE_PHONE
    assert states[("choose", "choose_channels")] == "success", logs  # not failed by the scheduler
    assert states[("choose", "announce")] == "success"
    assert announced == ["Email", "Slack"]
    assert (
        texts_to(callbell_sandbox, ALICE_PHONE)[-1]
        == f"Recorded: Email, Slack for {CHOOSE} / choose_channels"
    )
    assert states[("choose", "answer_as_mallory")] == "failed"
    assert "+31644444444 may not answer" in mallory_log, mallory_log[-3000:]
    assert not [r for r in callbell_sandbox.requests if "31644444444" in r["path"]]  # never read a reply
    assert texts_to(callbell_sandbox, MALLORY_PHONE) == []


class Script:
    """Plays the people: each step waits for what it answers, so the three runs go at their own pace."""

    def __init__(self, callbell_sandbox: CallbellSandbox, api: API, services: Services) -> None:
        self.sandbox, self.api, self.services = callbell_sandbox, api, services

    def wait(self, what: str, done: Any) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = done()
            if found:
                return found
            assert all(proc.poll() is None for proc in self.services.processes), self.services.logs()
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n{self.services.logs()}")

    def run(self) -> None:
        # choose: answered the moment the question lands, before the HITL task has parked.
        self.wait("the choose question", lambda: texts_to(self.sandbox, ALICE_PHONE))
        self.sandbox.receive(ALICE_PHONE, "1 and 3")
        # phone: a stranger's yes, then a wrong answer, its reprompt, then yes.
        self.wait("the phone question", lambda: texts_to(self.sandbox, APPROVER))
        self.sandbox.receive(STRANGER, "yes")
        self.sandbox.receive(APPROVER, "maybe later")
        self.wait("the reprompt", lambda: len(texts_to(self.sandbox, APPROVER)) >= 2)
        self.sandbox.receive(APPROVER, "yes")
        # ui: alice answers in Airflow, once the task has parked (a person in the UI is slower than that).
        self.wait("the ui question", lambda: texts_to(self.sandbox, UI_APPROVER))
        self.wait(
            "the ui task to park",
            lambda: self.api.state(EXAMPLE, "ui", "approve_publication") == "awaiting_input",
        )
        time.sleep(5)
        path = self.api.ti(EXAMPLE, "ui", "approve_publication") + "/-1/hitlDetails"
        self.api.call("PATCH", path, json={"chosen_options": ["Reject"]})
        for dag_id, run_id, final in (
            (EXAMPLE, "phone", "success"),
            (EXAMPLE, "ui", "success"),
            (CHOOSE, "choose", "failed"),
        ):
            self.wait(
                f"run {run_id} to end {final}",
                lambda d=dag_id, r=run_id: (
                    self.api.call("GET", f"/dags/{d}/dagRuns/{r}")["state"] in ("success", "failed")
                ),
            )
            assert self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"] == final, (
                self.services.logs()
            )
