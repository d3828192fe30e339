"""What the transport keeps of a server's answer: at most a megabyte, decoded safely, without secrets.

- :class:`BoundedDecoder` undoes ``Content-Encoding`` (gzip, deflate) a bounded slice at a time and
  stops past :data:`MAX_BODY_BYTES`, so that the size cap holds for the decoded answer (a gzip bomb)
  too; :func:`join_capped` applies the same cap to chunks a library already decoded.
- :func:`redact` is the one function that removes the token and any ``Authorization`` value from
  text that came from a server, before the text reaches an exception, a log line, an XCom or an event;
  :func:`redact_url` is its counterpart for a URL the user configured (a storage URI with a password).
- :func:`printable` is what a log line or a message may show of text from outside (a server, a
  customer, an exception): redacted, control characters escaped, cut to a bound, so that it can
  neither forge a line nor drive a terminal.

Standard library only: nothing here knows an HTTP library.
"""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The largest answer read, after decoding; Callbell's are a few hundred bytes, anything bigger is not
#: Callbell's API.
MAX_BODY_BYTES = 1 << 20
#: What both transports ask for; :class:`BoundedDecoder` undoes exactly these.
ACCEPT_ENCODING = "gzip, deflate"
#: A credential is never this short; shorter "tokens" (test fixtures) are not searched for in text.
_MIN_SECRET_CHARS = 4
_SECRET_PATTERNS = (
    # "Authorization: <value>" as a header line, a JSON member or a Python repr echoes it.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"),
    # A credential after its scheme, wherever it stands (a URL, a log line the server quotes, ...).
    re.compile(r"(?i)\b((?:bearer|basic|digest)\s+)[A-Za-z0-9._~+/=-]{8,}"),
)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with each secret and every ``Authorization`` value replaced by ``***``.

    Text that came from a server is untrusted: a proxy, a debugging endpoint or a misconfigured base
    URL may echo the request's headers back. Every excerpt the transport keeps goes through here.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


#: A query parameter whose name holds one of these carries a credential (redis-py reads ``?password=``).
_SECRET_QUERY_KEYS = ("pass", "token", "secret")


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url``: its userinfo password and every secret query value, raw and unquoted.

    Both spellings, because a library quoting the URL in an error may show either (``p%40ss`` or
    ``p@ss``). An unreadable URL yields nothing: the caller's own text is then all it can redact.
    """
    try:
        parts = urlsplit(url)
        netloc_password = parts.netloc.rpartition("@")[0].partition(":")[2] if "@" in parts.netloc else ""
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return []
    raw_query = [pair.partition("=") for pair in parts.query.split("&")]
    secrets = [netloc_password, unquote(netloc_password)]
    secrets += [value for key, value in query if _is_secret_key(key)]
    secrets += [value for key, _, value in raw_query if _is_secret_key(unquote(key))]
    return sorted({secret for secret in secrets if secret}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` fit for a log line or an error: userinfo and secret query values show as ``***``.

    ``redis://:pw@redis:6379/1`` becomes ``redis://***@redis:6379/1``, and
    ``redis://redis:6379/1?password=pw`` becomes ``redis://redis:6379/1?password=***``.
    """
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
        if parts.query:
            query = parse_qsl(parts.query, keep_blank_values=True)
            hidden = [(key, "***" if _is_secret_key(key) else value) for key, value in query]
            parts = parts._replace(query=urlencode(hidden, safe="*/:"))
    except ValueError:
        return "<unreadable URL>"
    return parts.geturl()


def _is_secret_key(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_QUERY_KEYS)


#: What :func:`printable` escapes: C0 and C1 controls (newlines, ``ESC`` of terminal sequences, ``NEL``),
#: ``DEL``, the line and paragraph separators, and the invisible format characters (zero-width and
#: bidirectional overrides) that make a line read differently from what it holds.
_FORMAT_CHARS = r"\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
_UNPRINTABLE = re.compile(rf"[\x00-\x1f{_FORMAT_CHARS}]")
_UNPRINTABLE_BUT_NEWLINES = re.compile(rf"[\x00-\x09\x0b-\x1f{_FORMAT_CHARS}]")
#: How far past ``limit`` :func:`printable` still looks for secrets: a secret cut at the bound must not
#: leave its beginning behind.
_SECRET_LOOKAHEAD = 4096


def printable(text: str, *secrets: str | None, limit: int = 500, keep_newlines: bool = False) -> str:
    """``text`` from outside as a log line or a message may show it: redacted, escaped, at most ``limit``.

    Each control or invisible format character becomes its Python escape (``\\n``, ``\\x1b``,
    ``\\u202e``), so that a server's or a customer's text cannot start a line of its own in a log,
    move a terminal's cursor or reverse what follows; ``keep_newlines`` keeps ``\\n`` for multi-line
    text that is shown indented (an exception in an alert). Secrets are removed before the text is
    cut, so that a cut cannot leave the start of one.
    """
    head = redact(text[: limit + _SECRET_LOOKAHEAD], *secrets)
    pattern = _UNPRINTABLE_BUT_NEWLINES if keep_newlines else _UNPRINTABLE
    shown = pattern.sub(_escape, head)
    return shown if len(shown) <= limit else shown[: max(limit - 1, 0)] + "…"


def exception_text(err: BaseException) -> str:
    """``"<type>: <message>"`` for an exception, or its type's name alone when it has no usable message.

    An exception's ``__str__`` is anyone's code: it may raise, or return something other than a string
    (which makes ``str()`` raise); the error, or the alert, that quotes it must still be made.
    """
    name = type(err).__name__
    try:
        message = str(err)
    except Exception:
        return name
    return f"{name}: {message}" if message else name


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


class BodyTooLargeError(Exception):
    """The decoded answer passed :data:`MAX_BODY_BYTES`; ``head`` holds its first bytes."""

    def __init__(self, head: bytes, status_code: int | None = None) -> None:
        super().__init__(f"larger than {MAX_BODY_BYTES} bytes")
        self.head = head
        self.status_code = status_code  # the answer's, when the decoder was told


class UnsupportedEncodingError(Exception):
    """The answer's ``Content-Encoding`` is not one of :data:`ACCEPT_ENCODING`, or is corrupt."""


class BoundedDecoder:
    """Undo a ``Content-Encoding`` and collect at most :data:`MAX_BODY_BYTES` of the result.

    ``zlib``'s ``max_length`` stops each step one byte past the cap, so a 1 kB chunk that would
    inflate to 1 GB never does: memory stays within the cap plus one network chunk.

    :param content_encoding: the answer's ``Content-Encoding`` header.
    :param status_code: the answer's status, kept on :class:`BodyTooLargeError` for its error.
    """

    def __init__(self, content_encoding: str | None, status_code: int | None = None) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding in ("identity", ""):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise UnsupportedEncodingError(
                f"Content-Encoding {encoding[:40]!r} (asked for {ACCEPT_ENCODING})"
            )
        self._status_code = status_code
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Decode one chunk of the answer as received; raise once the decoded size passes the cap."""
        if self._zlib is None:
            self._add(data)
            return
        try:
            while data:
                self._add(self._zlib.decompress(data, MAX_BODY_BYTES - self._size + 1))
                data = self._zlib.unconsumed_tail
        except zlib.error as err:
            raise UnsupportedEncodingError(f"corrupt compressed answer ({err})") from None

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        self._chunks.append(data)
        if self._size > MAX_BODY_BYTES:
            raise BodyTooLargeError(b"".join(self._chunks)[:1000], self._status_code)

    def body(self) -> bytes:
        """The whole decoded answer, once every chunk was fed."""
        if self._zlib is not None:
            self._add(self._zlib.flush())
        return b"".join(self._chunks)


def join_capped(chunks: Iterable[bytes], status_code: int | None = None) -> bytes:
    """Join chunks a library already decoded, raising :class:`BodyTooLargeError` past the cap.

    The chunks are consumed as they come, so a stream stops being read one chunk past the cap.
    ``status_code`` is the answer's, for the error.
    """
    decoder = BoundedDecoder(None, status_code)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.body()
