"""docs/connection.md tells the truth: every extra of the form, its default, and the real error texts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_callbell.exceptions import CallbellConnectionConfigError
from airflow_provider_callbell.get_provider_info import CONN_FIELDS
from airflow_provider_callbell.hooks.callbell import DEFAULT_CHANNEL, DEFAULT_TIMEOUT, CallbellHook
from airflow_provider_callbell.retry import RetryPolicy
from tests.helpers import set_connection

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "connection.md").read_text()


def table_rows(heading: str) -> list[list[str]]:
    """The body rows of the first table under ``## heading``, as lists of cell texts."""
    section = PAGE.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


class TestExtras:
    def test_every_extra_of_the_form_is_documented_with_its_label(self):
        documented = {row[0].strip("`"): row[1] for row in table_rows("Extras")}
        assert documented == {name: spec["label"] for name, spec in CONN_FIELDS.items()}

    def test_documented_defaults_are_the_code_defaults(self):
        defaults = {row[0].strip("`"): row[2].strip("`") for row in table_rows("Extras")}
        policy = RetryPolicy()
        assert defaults == {
            "from": DEFAULT_CHANNEL,
            "channel_uuid": "unset",
            "timeout": "unset",
            "connect_timeout": f"{DEFAULT_TIMEOUT[0]:g}",
            "read_timeout": f"{DEFAULT_TIMEOUT[1]:g}",
            "max_retries": str(policy.max_retries),
            "retry_max_seconds": f"{policy.max_seconds:g}",
            "retry_backoff": f"{policy.backoff:g}",
            "delivery": policy.delivery,
            "rate_limit_storage": "unset",
            "rate_limit_storage_password": "unset",
            "allow_plain_http": "false",
        }


#: One connection per row of the "Configuration errors" table, in the table's order.
MISTAKES: list[tuple[str, dict[str, object] | None]] = [
    ("not-defined", None),
    ("no-token", {"password": ""}),
    ("scheme-less-loopback", {"host": "localhost:8788/v1"}),
    ("plain-http", {"host": "http://api.callbell.eu/v1"}),
    ("user-info", {"host": "https://user:secret@api.callbell.eu/v1"}),
    ("two-schemes", {"host": "https://api.callbell.eu/v1", "schema": "http"}),
    ("not-http", {"host": "ftp://api.callbell.eu/v1"}),
    ("bad-extra", {"extra": {"timeout": "soon"}}),
    ("bad-storage", {"extra": {"rate_limit_storage": "redis"}}),
    (
        "storage-password-twice",
        {
            "extra": {
                "rate_limit_storage": "redis://:Redis-Secr3t@redis/1",
                "rate_limit_storage_password": "pw",
            }
        },
    ),
]


@pytest.mark.parametrize(
    ("row", "connection"), [pytest.param(row, conn, id=name) for row, (name, conn) in enumerate(MISTAKES)]
)
def test_configuration_errors_table_quotes_the_real_messages(monkeypatch, row, connection):
    rows = table_rows("Configuration errors")
    assert len(rows) == len(MISTAKES)
    quoted = re.search(r"`([^`]+)`", rows[row][0])[1]
    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_CALLBELL_DEFAULT", raising=False)
    else:
        set_connection(monkeypatch, **connection)
    with pytest.raises(CallbellConnectionConfigError) as excinfo:
        CallbellHook().list_templates()
    for fragment in quoted.split("..."):
        assert fragment.strip() in str(excinfo.value)
