"""The transport's building blocks: redaction, bounded decoding and the deadline watchdog."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib

import pytest

from airflow_provider_callbell.transport import (
    MAX_BODY_BYTES,
    BodyTooLargeError,
    BoundedDecoder,
    UnsupportedEncodingError,
    Watchdog,
    redact,
)
from airflow_provider_callbell.transport.caps import exception_text, printable
from airflow_provider_callbell.transport.protocol import no_answer_error

TOKEN = "s3cr3t-t0ken-value"


class TestRedact:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param(f"token {TOKEN} echoed", "token *** echoed", id="literal"),
            pytest.param("Authorization: Bearer abcdefgh12345", "Authorization: ***", id="header-line"),
            pytest.param('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "***"}', id="json"),
            pytest.param("{'Authorization': 'xyz'}", "{'Authorization': '***'}", id="repr"),
            pytest.param("sent bearer abcdefgh12345 twice", "sent bearer *** twice", id="bearer"),
            pytest.param("Basic dXNlcjpwYXNzd29yZA==", "Basic ***", id="basic"),
            pytest.param("no secret here", "no secret here", id="nothing"),
        ],
    )
    def test_patterns(self, text, expected):
        assert redact(text, TOKEN) == expected

    def test_short_tokens_are_not_searched(self):
        assert redact("a test", "t") == "a test"

    def test_the_minimum_length_is_four_characters(self):
        """A secret of exactly the minimum length is redacted; one character less is not searched."""
        assert redact("key wxyz here", "wxyz") == "key *** here"
        assert redact("key xyz here", "xyz") == "key xyz here"

    def test_no_token_known(self):
        assert redact("Authorization: Bearer abcdefgh12345", None) == "Authorization: ***"


class TestPrintable:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            pytest.param("line\nforged", "line\\nforged", id="newline"),
            pytest.param("a\rb", "a\\rb", id="carriage-return"),
            pytest.param("\x1b[2J\x1b[1;1H", "\\x1b[2J\\x1b[1;1H", id="terminal-escapes"),
            pytest.param("a\x85b\u2028c\u2029d", "a\\x85b\\u2028c\\u2029d", id="unicode-line-breaks"),
            pytest.param("abc\u202edcba", "abc\\u202edcba", id="bidi-override"),
            pytest.param("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff", id="invisible"),
            pytest.param("\x00\x7f", "\\x00\\x7f", id="nul-and-del"),
            pytest.param("café ✅ 東京 \\n", "café ✅ 東京 \\n", id="printable-untouched"),
        ],
    )
    def test_control_and_invisible_characters_are_escaped(self, text, shown):
        assert printable(text) == shown

    def test_newlines_can_be_kept_for_indented_text(self):
        assert printable("one\ntwo\r\x1b", keep_newlines=True) == "one\ntwo\\r\\x1b"

    def test_secrets_are_removed_and_the_text_cut(self):
        shown = printable(f"{TOKEN} Authorization: Bearer abcdefgh12345\n" + "x" * 1000, TOKEN, limit=50)
        assert shown == "*** Authorization: ***\\n" + "x" * 25 + "…"
        assert len(shown) == 50

    def test_a_secret_astride_the_limit_leaves_nothing(self):
        for offset in range(len(TOKEN)):
            shown = printable("x" * (40 - offset) + TOKEN, TOKEN, limit=45)
            assert TOKEN[:4] not in shown


class TestExceptionText:
    def test_type_and_message(self):
        assert exception_text(ValueError("bad")) == "ValueError: bad"

    def test_no_message(self):
        assert exception_text(KeyboardInterrupt()) == "KeyboardInterrupt"

    def test_a_str_that_raises_or_is_not_a_string(self):
        class Raises(Exception):
            def __str__(self) -> str:
                raise RuntimeError

        class NotAString(Exception):
            def __str__(self):
                return b"bytes"

        assert exception_text(Raises()) == "Raises"
        assert exception_text(NotAString()) == "NotAString"


class TestNoAnswerError:
    def test_the_librarys_words_are_escaped_and_redacted(self):
        """``http.client`` quotes a server's bad status line in its error, which sensors log at each poll."""
        err = no_answer_error(TOKEN, "GET /x", OSError(f"bad line 'HTTP/1.1 200\n\x1b[2KINFO {TOKEN}'"))
        assert "\n" not in str(err)
        assert "\x1b" not in str(err)
        assert TOKEN not in str(err)
        assert "200\\n\\x1b[2KINFO ***" in str(err)


class TestBoundedDecoder:
    @pytest.mark.parametrize(
        ("encoding", "compress"),
        [
            pytest.param(None, lambda b: b, id="identity"),
            pytest.param("gzip", gzip.compress, id="gzip"),
            pytest.param("x-gzip", gzip.compress, id="x-gzip"),
            pytest.param("deflate", zlib.compress, id="deflate"),
        ],
    )
    def test_round_trip_in_small_chunks(self, encoding, compress):
        data = b'{"message": {"uuid": "x"}}' * 100
        encoded = compress(data)
        decoder = BoundedDecoder(encoding)
        for i in range(0, len(encoded), 7):
            decoder.feed(encoded[i : i + 7])
        assert decoder.body() == data

    def test_bomb_stops_one_byte_past_the_cap(self):
        decoder = BoundedDecoder("gzip")
        with pytest.raises(BodyTooLargeError) as excinfo:
            decoder.feed(gzip.compress(b"0" * (20 << 20)))
        assert excinfo.value.head == b"0" * 1000
        assert decoder._size == MAX_BODY_BYTES + 1

    @pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
    def test_unsupported_encodings_are_refused(self, encoding):
        with pytest.raises(UnsupportedEncodingError, match="Content-Encoding"):
            BoundedDecoder(encoding)

    def test_corrupt_data(self):
        with pytest.raises(UnsupportedEncodingError, match="corrupt"):
            BoundedDecoder("gzip").feed(b"\x1f\x8bgarbage")


class _Conn:
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock


class TestWatchdog:
    def test_shuts_down_a_blocked_read_at_the_deadline(self):
        client, server = socket.socketpair()
        watchdog = Watchdog()
        conn = _Conn(client)
        start = time.monotonic()
        with watchdog.watch(0.3) as deadlines:
            watchdog.arm(conn)  # type: ignore[arg-type]
            assert client.recv(10) == b""  # woken by the shutdown, as EOF
        assert 0.25 < time.monotonic() - start < 2
        assert deadlines.expired
        client.close()
        server.close()

    def test_leaves_a_finished_attempt_alone(self):
        client, server = socket.socketpair()
        watchdog = Watchdog()
        with watchdog.watch(0.1) as deadlines:
            watchdog.arm(_Conn(client))  # type: ignore[arg-type]
        time.sleep(0.3)
        server.sendall(b"x")
        assert client.recv(1) == b"x"
        assert not deadlines.expired
        client.close()
        server.close()

    def test_leaves_a_connection_another_attempt_took_over(self):
        client, server = socket.socketpair()
        watchdog = Watchdog()
        conn = _Conn(client)
        with watchdog.watch(0.1):
            watchdog.arm(conn)  # type: ignore[arg-type]
            other = threading.Thread(target=lambda: _arm_in_thread(watchdog, conn))
            other.start()
            other.join()
            time.sleep(0.3)
        server.sendall(b"x")
        assert client.recv(1) == b"x"
        client.close()
        server.close()

    def test_finished_attempts_do_not_pile_up(self):
        # Each would otherwise wait in the heap for its deadline: a bulk send's memory grew with them.
        watchdog = Watchdog()
        for _ in range(1000):
            with watchdog.watch(60):
                watchdog.arm(_Conn(None))  # type: ignore[arg-type]
        with watchdog.watch(60):
            watchdog.arm(_Conn(None))  # type: ignore[arg-type]
            assert len(watchdog._heap) <= Watchdog._PRUNE_MIN
            assert [entry[2].done for entry in watchdog._heap].count(False) == 1  # the running one

    def test_no_deadline_outside_watch(self):
        client, server = socket.socketpair()
        watchdog = Watchdog()
        conn = _Conn(client)
        watchdog.arm(conn)  # type: ignore[arg-type]
        assert not hasattr(conn, "_callbell_attempt")
        client.close()
        server.close()


def _arm_in_thread(watchdog: Watchdog, conn: _Conn) -> None:
    with watchdog.watch(60):
        watchdog.arm(conn)  # type: ignore[arg-type]


class TestDeadlineAdapter:
    """Its pools are ours (the private names they rely on are checked in tests/test_private_apis.py)."""

    def test_the_adapter_makes_pools_that_arm_the_watchdog(self):
        from airflow_provider_callbell.transport import _urllib3

        adapter = _urllib3.DeadlineAdapter()
        for url, pool in [
            ("https://api.callbell.eu", _urllib3._DeadlineHTTPSConnectionPool),
            ("http://127.0.0.1:8787", _urllib3._DeadlineHTTPConnectionPool),
        ]:
            assert type(adapter.poolmanager.connection_from_url(url)) is pool
        proxied = adapter.proxy_manager_for("http://proxy.example:3128")
        assert proxied.pool_classes_by_scheme is _urllib3._POOL_CLASSES
