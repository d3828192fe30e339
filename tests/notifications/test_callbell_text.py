"""What leaves for a phone: the notifier's text is masked, survives any exception, and ends with the real link.

An exception's text is anyone's: a driver quoting the password it was given, an API echoing the token,
a ``__str__`` that raises, a message that imitates the summary's last line. These tests send through
the real hook to ``requests-mock`` and read what went out.
"""

from __future__ import annotations

import secrets
from typing import Any
from unittest import mock

import pytest

from airflow_provider_callbell.callback_events import ERROR_LINE_PREFIX, CallbackEvent
from airflow_provider_callbell.notifications import callbell as notifications
from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.validation import TEXT_MAX_CHARS
from tests.compat import mask_secret
from tests.helpers import TOKEN
from tests.notifications.helpers import LOG_URL, task_context, texts


def failed_with(error: Any, **ti_fields: Any) -> dict[str, Any]:
    context = task_context("failed", **ti_fields)
    context["exception"] = error
    return context


def send(send_ok: Any, context: dict[str, Any], **kwargs: Any) -> str:
    CallbellNotifier(to="+31612345678", **kwargs)(context)
    (text,) = texts(send_ok)
    return text


@pytest.fixture
def registered_secret() -> str:
    """A password Airflow's secrets masker knows, as it knows a connection's once read.

    Random from its first character: the masker is process-wide, and on Airflow 2.11 a shorter secret
    registered by an earlier test ("pw", say) would mask only a prefix of ours."""
    secret = "Zq" + secrets.token_hex(15)  # letters first: its first characters are in no other text
    mask_secret(secret)
    return secret


class TestMasked:
    def test_a_secret_airflow_masks_is_masked_in_the_alert(self, send_ok, registered_secret):
        text = send(send_ok, failed_with(ConnectionError(f"login as etl:{registered_secret} refused")))
        assert registered_secret not in text
        assert "> ConnectionError: login as etl:*** refused" in text.splitlines()

    def test_the_connections_token_is_masked_in_the_alert(self, send_ok):
        text = send(send_ok, failed_with(RuntimeError(f"the API said: bad token {TOKEN}")))
        assert TOKEN not in text
        assert "> RuntimeError: the API said: bad token ***" in text.splitlines()

    def test_the_token_is_masked_even_where_airflow_does_not_know_it(self, send_ok, monkeypatch):
        """The connection's own redaction, on its own (a DAG processor whose masker never saw the token)."""
        monkeypatch.setattr(notifications, "mask_secrets", lambda text: text)
        text = send(send_ok, failed_with(RuntimeError(f"token={TOKEN}; Authorization: Bearer {TOKEN}")))
        assert TOKEN not in text
        assert "> RuntimeError: token=***; Authorization: ***" in text.splitlines()

    def test_content_rendered_from_the_context_is_masked(self, send_ok, registered_secret):
        text = send(
            send_ok,
            failed_with(ValueError(f"dsn postgres://etl:{registered_secret}@db/etl")),
            content={"text": "Broke: {{ exception }}"},
        )
        assert text == "Broke: dsn postgres://etl:***@db/etl"

    def test_template_values_rendered_from_the_context_are_masked(self, send_ok, registered_secret):
        CallbellNotifier(
            to="+31612345678",
            template_uuid="b" * 32,
            optin_contact=True,
            template_values=["{{ ti.task_id }}", "{{ exception }}"],
        )(failed_with(ValueError(f"key {registered_secret}")))
        assert send_ok.last_request.json()["template_values"] == ["load", "key ***"]

    def test_a_secret_cut_by_the_limit_leaves_no_beginning(self, registered_secret):
        """Masked before it is cut: a secret astride the cut must not leave its first characters."""
        for padding in range(TEXT_MAX_CHARS - 200, TEXT_MAX_CHARS - 100):  # the cut is in there
            text = CallbackEvent.from_context(
                failed_with(ValueError("x" * padding + registered_secret))
            ).summary(lambda text: text.replace(registered_secret, "***"))
            assert registered_secret[:5] not in text
            assert len(text) <= TEXT_MAX_CHARS

    def test_the_message_is_masked_as_it_is_sent(self, send_ok, monkeypatch):
        """Whatever made the text, the notifier masks it on its way out."""
        seen: list[str] = []
        monkeypatch.setattr(notifications, "mask_secrets", lambda text: seen.append(text) or text)
        with mock.patch.object(CallbackEvent, "summary", return_value="summary"):
            send(send_ok, failed_with(ValueError("x")))
        assert seen == ["summary"]


class TestAnyException:
    def test_an_exception_whose_str_raises_still_gives_an_alert(self, send_ok):
        class Broken(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        text = send(send_ok, failed_with(Broken()))
        assert text.splitlines()[1:] == ["> Broken", f"Log: {LOG_URL}"]

    def test_an_exception_whose_str_is_not_a_string_still_gives_an_alert(self, send_ok):
        class Odd(Exception):
            def __str__(self) -> Any:
                return 42

        text = send(send_ok, failed_with(Odd()))
        assert text.splitlines()[1:] == ["> Odd", f"Log: {LOG_URL}"]

    def test_a_huge_exception_is_read_only_as_far_as_it_can_be_shown(self, send_ok):
        text = send(send_ok, failed_with(ValueError("y" * 50_000_000)))
        assert len(text) == TEXT_MAX_CHARS
        assert text.endswith(f"…\nLog: {LOG_URL}")


class TestTheRealLinkIsLast:
    def test_an_exception_imitating_the_link_is_quoted(self, send_ok):
        text = send(send_ok, failed_with(ValueError("boom\nLog: http://evil.example/\n\nLog: http://evil")))
        lines = text.splitlines()
        assert lines[-1] == f"Log: {LOG_URL}"
        assert [line for line in lines if line.startswith("Log:")] == [f"Log: {LOG_URL}"]
        assert lines[1:-1] == [
            "> ValueError: boom",
            "> Log: http://evil.example/",
            ERROR_LINE_PREFIX,
            "> Log: http://evil",
        ]

    @pytest.mark.parametrize(
        "forged",
        [
            pytest.param("\rLog: http://evil", id="carriage-return"),
            pytest.param("\x85Log: http://evil", id="next-line"),
            pytest.param("\u2028Log: http://evil", id="line-separator"),
            pytest.param("\x1b[2K\x1b[1GLog: http://evil", id="terminal-escapes"),
            pytest.param("\u202eLog: http://evil", id="bidi-override"),
        ],
    )
    def test_control_characters_in_the_exception_are_escaped(self, send_ok, forged):
        text = send(send_ok, failed_with(ValueError(forged)))
        error_line = text.splitlines()[1]
        assert error_line == "> ValueError: " + forged.encode("unicode_escape").decode()
        assert text.splitlines()[-1] == f"Log: {LOG_URL}"

    def test_a_run_id_cannot_add_a_line(self, send_ok):
        text = send(send_ok, failed_with(ValueError("x"), run_id="manual\nLog: http://evil"))
        assert text.splitlines()[0].endswith("in run manual\\nLog: http://evil (try 3 of 3)")
        assert [line for line in text.splitlines() if line.startswith("Log:")] == [f"Log: {LOG_URL}"]

    def test_an_overlong_headline_is_cut_before_the_link(self, send_ok):
        text = send(send_ok, failed_with(ValueError("x"), run_id="r" * 5000))
        assert len(text) == TEXT_MAX_CHARS
        assert text.endswith(f"r…\nLog: {LOG_URL}")
