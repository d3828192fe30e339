"""What the sandbox's own tests share: its default token, a text message and a raw send."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

    from airflow_provider_callbell.sandbox import CallbellSandbox

TOKEN = "sandbox-token"
TEXT = {"to": "+31612345678", "from": "whatsapp", "type": "text", "content": {"text": "Hello!"}}


def send(client: requests.Session, callbell_sandbox: CallbellSandbox, body: Any) -> requests.Response:
    return client.post(f"{callbell_sandbox.url}/messages/send", json=body, timeout=5)
