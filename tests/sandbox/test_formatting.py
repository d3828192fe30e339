"""The inbox's WhatsApp formatting (issue 21): marks at word boundaries only, so that the names, run ids
and links of an alert stay as they were sent, and the formatting people type still shows."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_callbell.callback_events import CallbackEvent
from airflow_provider_callbell.sandbox.formatting import FORMATTED_MAX_CHARS, formatted

RUN_ID = "manual__2026-12-03T10:00:00+00:00"
LOG_URL = (
    "http://localhost:8080/dags/sales_etl_daily/runs/manual__2026-12-03T10:00:00+00:00"
    "/tasks/load_to_dwh?try_number=1&map_index=-1"
)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("sales_etl_daily", id="snake-case"),
        pytest.param("task load_to_dwh of dag sales_etl_daily", id="snake-case-words"),
        pytest.param("_private_dag failed", id="leading-underscore"),
        pytest.param("__init__ and __main__", id="dunder"),
        pytest.param(RUN_ID, id="manual-run-id"),
        pytest.param("scheduled__2026-12-03T00:00:00+00:00 and asset_triggered__2026-12-03", id="run-ids"),
        pytest.param(f"Log: {LOG_URL}", id="log-url"),
        pytest.param("see http://x.test/_docs_/page and https://x.test/*a*/", id="marks-inside-urls"),
        pytest.param("https://example.com/~alice/report~final.pdf", id="tilde-url"),
        pytest.param("2*3*4 = 24 and a*b", id="arithmetic"),
        pytest.param("* not bold* and _ not italic _", id="space-inside-the-marks"),
        pytest.param("*not\nbold*", id="across-lines"),
        pytest.param("**", id="empty-bold"),
        pytest.param("~~~ and ``` alone", id="lone-marks"),
        pytest.param("price_*2* and x*y*", id="mark-after-a-word"),
    ],
)
def test_text_without_formatting_stays_intact(text: str) -> None:
    assert formatted(text) == [text]


def test_the_default_failure_alert_stays_intact() -> None:
    alert = CallbackEvent(
        level="task",
        outcome="failed",
        dag_id="sales_etl_daily",
        run_id=RUN_ID,
        task_id="load_to_dwh",
        try_number=2,
        max_tries=3,
        error="KeyError: 'customer_id' in transform_rows",
        log_url=LOG_URL,
    ).summary()
    assert "sales_etl_daily" in alert  # the names of the alert, as sent
    assert LOG_URL in alert
    assert formatted(alert) == [alert]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        pytest.param("*bold*", [("strong", ["bold"])], id="bold"),
        pytest.param("_italic_", [("em", ["italic"])], id="italic"),
        pytest.param("~strike~", [("s", ["strike"])], id="strike"),
        pytest.param("```mono```", [("code", ["mono"])], id="monospace"),
        pytest.param("use `dag_id` here", ["use ", ("code", ["dag_id"]), " here"], id="inline-code"),
        pytest.param(
            "Disk *almost* _full_ on ~db1~ ```/var```",
            [
                "Disk ",
                ("strong", ["almost"]),
                " ",
                ("em", ["full"]),
                " on ",
                ("s", ["db1"]),
                " ",
                ("code", ["/var"]),
            ],
            id="all-four",
        ),
        pytest.param("*two words*", [("strong", ["two words"])], id="words"),
        pytest.param(
            "(*paren*), *end*.",
            ["(", ("strong", ["paren"]), "), ", ("strong", ["end"]), "."],
            id="punctuation",
        ),
        pytest.param("*_both_*", [("strong", [("em", ["both"])])], id="nested"),
        pytest.param("_*both*_", [("em", [("strong", ["both"])])], id="nested-the-other-way"),
        pytest.param("*a _b_ c*", [("strong", ["a ", ("em", ["b"]), " c"])], id="nested-inside"),
        pytest.param("```a *b* c```", [("code", ["a *b* c"])], id="nothing-inside-monospace"),
        pytest.param("`a *b*`", [("code", ["a *b*"])], id="nothing-inside-inline-code"),
        pytest.param("```line 1\nline 2```", [("code", ["line 1\nline 2"])], id="monospace-spans-lines"),
        pytest.param("*one*\n*two*", [("strong", ["one"]), "\n", ("strong", ["two"])], id="one-per-line"),
        pytest.param("*see https://x.test/a_b*", [("strong", ["see https://x.test/a_b"])], id="around-a-url"),
        pytest.param(
            f"DAG *sales_etl_daily* run _{RUN_ID}_",
            ["DAG ", ("strong", ["sales_etl_daily"]), " run ", ("em", [RUN_ID])],
            id="marked-names",
        ),
        pytest.param("yes *please*", ["yes ", ("strong", ["please"])], id="a-customer-answer"),
    ],
)
def test_formatting_shows(text: str, pieces: list[Any]) -> None:
    assert formatted(text) == pieces


def repeated(unit: str) -> str:
    """``unit`` repeated to the longest text that is formatted."""
    return (unit * (FORMATTED_MAX_CHARS // len(unit) + 1))[:FORMATTED_MAX_CHARS]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(repeated("*a "), id="openers-without-closers"),
        pytest.param(repeated("_a_b "), id="closers-inside-words"),
        pytest.param(repeated("*a " * 50 + "\n"), id="many-lines"),
        pytest.param(repeated("*_~`"), id="marks-only"),
        pytest.param("http://x/" + repeated("*a")[9:], id="one-long-url"),
    ],
)
def test_the_longest_text_is_formatted_quickly(text: str) -> None:
    # A customer's text is input from outside: it must never make a poll of the inbox slow. Measured
    # 20-90 ms each on a busy 2-core machine; a quadratic scan takes seconds.
    assert len(text) == FORMATTED_MAX_CHARS
    started = time.perf_counter()
    formatted(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"{len(text)} characters took {elapsed:.2f} s"


def test_a_longer_text_is_shown_as_it_is() -> None:
    text = "*a* " * 250_000  # 1 MB, what the sandbox's body cap lets a customer's answer be
    started = time.perf_counter()
    assert formatted(text) == [text]
    assert time.perf_counter() - started < 0.5
    assert formatted(text[: FORMATTED_MAX_CHARS - 1])[0] == ("strong", ["a"])
