"""What Airflow's ProvidersManager reads from this distribution, through the entry point.

The connection form is declared here (``conn-fields``, ``ui-field-behaviour``), so Airflow 3.2+ builds
the Connections UI without importing the hook; the hook's ``get_ui_field_behaviour`` and
``get_connection_form_widgets`` derive from the same two constants for older Airflow.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_callbell import __version__

DEFAULT_BASE_URL = "https://api.callbell.eu/v1"

#: The connection extras, in the ``conn-fields`` form of Airflow's provider schema.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "from": {
        "label": "Default channel type",
        "description": "whatsapp, telegram, instagram or facebook; messages that name none use it",
        "schema": {
            "type": ["string", "null"],
            "default": "whatsapp",
            "enum": ["whatsapp", "telegram", "instagram", "facebook", None],
        },
    },
    "channel_uuid": {
        "label": "Default channel UUID",
        "description": "Which of the account's channels sends; empty means Callbell's main channel",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Seconds to connect, and again to answer: one attempt of a request ends within twice this",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "description": "Seconds to connect (default 5); overrides Timeout",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "read_timeout": {
        "label": "Read timeout (seconds)",
        "description": "Seconds to answer (default 30); one attempt ends within connect + read timeout; overrides Timeout",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of a request refused with 429/502/503/504 or not connected (default 3)",
        "schema": {"type": ["integer", "null"], "minimum": 0},
    },
    "retry_max_seconds": {
        "label": "Retry budget (seconds)",
        "description": "The most time one request spends waiting between retries (default 60)",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "retry_backoff": {
        "label": "Retry backoff (seconds)",
        "description": "First wait when Callbell sends no Retry-After; doubles each retry (default 0.5)",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "delivery": {
        "label": "Delivery guarantee",
        "description": "at_most_once (default): never resend a message that may have gone out (500, "
        "read timeout); at_least_once: resend it, accepting a possible duplicate",
        "schema": {
            "type": ["string", "null"],
            "default": "at_most_once",
            "enum": ["at_most_once", "at_least_once", None],
        },
    },
    "rate_limit_storage": {
        "label": "Shared rate limit storage",
        "description": "A limits storage URI such as redis://redis:6379/1: every process sending through "
        "this account shares one schedule of 285 requests/s and each 429's pause there; empty: per hook",
        "schema": {"type": ["string", "null"]},
    },
    "rate_limit_storage_password": {
        "label": "Shared rate limit storage password",
        "description": "The storage's password (e.g. Redis requirepass), kept out of the URI: Airflow "
        "masks this field; empty: none, or the URI's own",
        "schema": {"type": ["string", "null"]},
    },
    "allow_plain_http": {
        "label": "Allow plain http",
        "description": "true: allow an http:// Base URL that is not localhost (a sandbox on a trusted "
        "network); the token then travels unencrypted. Default false",
        # No default filled in: an empty field means false, and the form saves nothing for it.
        "schema": {"type": ["string", "null"], "enum": ["false", "true", None]},
    },
}

#: Which standard fields the form hides or renames, in the ``ui-field-behaviour`` form.
#:
#: The port stays visible, though optional: Airflow 3.3.2's Test button (in the connections list)
#: sends ``port: 0`` for a connection stored without a port, which its API refuses as "a different
#: destination" (fixed upstream by apache/airflow#73298). A connection stored with a port, e.g. 443,
#: tests fine. Airflow 3 ignores ``extra`` here (its form always offers the extras as JSON); Airflow
#: 2.x hides its Extra text box, whose content the extra fields already edit. Airflow offers no way
#: to mark a standard field required, so the label says it.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login", "schema", "extra"],
    "relabeling": {"password": "API token (required)", "host": "Base URL", "port": "Port (optional)"},
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "port": "443",
        "password": "API key from Callbell's dashboard",
    },
}

_INTEGRATION = "Callbell"


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata; ``package-name`` must equal the distribution name."""
    return {
        "package-name": "airflow-provider-callbell",
        "name": "Callbell",
        "description": "Send WhatsApp, Telegram, Instagram and Facebook messages through "
        "`Callbell <https://www.callbell.eu/>`__.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.callbell.eu/api/rest",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_callbell.hooks.callbell",
                    "airflow_provider_callbell.hooks.airflow_api",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                # operators.hitl and triggers.hitl import on Airflow 3.1+ only (Human-in-the-loop).
                "python-modules": [
                    "airflow_provider_callbell.operators.callbell",
                    "airflow_provider_callbell.operators.hitl",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_callbell.sensors.callbell"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_callbell.triggers.callbell",
                    "airflow_provider_callbell.triggers.hitl",
                ],
            }
        ],
        "notifications": ["airflow_provider_callbell.notifications.callbell.CallbellNotifier"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_callbell.hooks.callbell.CallbellHook",
                "hook-name": "Callbell",
                "connection-type": "callbell",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
