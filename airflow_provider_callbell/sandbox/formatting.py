"""WhatsApp's text formatting, as the inbox shows it: ``*bold*``, ``_italic_``, ``~strike~``, monospace.

Why it exists: the inbox should show a message as the recipient's phone does, and that includes
what it does *not* format. WhatsApp formats a marked span only at word boundaries, so the
``sales_etl_daily`` of an alert, its run id ``manual__2026-12-03T10:00:00+00:00`` and its log link
stay as they are; a pattern that ignores boundaries shows them garbled (the default failure alert
did). The rules, as WhatsApp applies them:

* ``*bold*``, ``_italic_``, ``~strikethrough~`` and inline code (one backtick on each side): the
  opening mark starts the text or follows a character that is not a letter, a digit or ``_``; it is
  followed by a non-space; the closing mark is the first one after it on the same line that follows
  a non-space and is followed by the end or by a character that is not a letter, a digit or ``_``;
* monospace (three backticks on each side): the same boundaries, and it may span lines;
* styles nest (``*_both_*``), but not in themselves; nothing is formatted inside monospace or inline
  code, nor inside a URL (a web address is shown as it was sent).

Parsing is done here rather than in the page so that it is tested without a browser. The result is
plain data (text, and ``[tag, children]`` for a styled span) that the page turns into DOM nodes with
every text as a text node. It runs in O(n log n) on any input, and visits only the marks: closing
marks are found by bisection over positions computed once, never by rescanning, since a customer's
text is input from outside.
"""

from __future__ import annotations

import bisect
import re
from typing import TypeAlias

#: One piece of formatted text: plain text, or a tag (``strong``, ``em``, ``s``, ``code``) and its pieces
#: (a JSON array once sent to the page).
Piece: TypeAlias = "str | tuple[str, list[Piece]]"

#: The single-character marks and the HTML element the page shows each with.
MARKS = {"*": "strong", "_": "em", "~": "s", "`": "code"}
FENCE = "```"
URL = re.compile(r"https?://\S+")
_MARK = re.compile(r"[*_~`]")
_NEWLINE = re.compile(r"\n")
_URL_TAIL = ".,;:!?)]}'\"*_~`"  # punctuation that ends a sentence rather than the address


#: The longest text formatted: a WhatsApp Business message holds at most 4,096 characters. A longer
#: one (only the sandbox accepts it) is shown as it is, which bounds the work of one bubble.
FORMATTED_MAX_CHARS = 4096


def formatted(text: str) -> list[Piece]:
    """``text`` split into plain and styled pieces, as WhatsApp would show it."""
    if len(text) > FORMATTED_MAX_CHARS:
        return [text]
    return _parse(text, frozenset())


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class _Scan:
    """Where marks may open and close in one text, each found once: every mark then costs a bisection.

    Only the marks themselves are visited (found by a regular expression, in C), so a text without
    any costs next to nothing.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.urls: list[tuple[int, int]] = []
        for match in URL.finditer(text):
            end = len(match.group().rstrip(_URL_TAIL))
            if end > len("https://"):
                self.urls.append((match.start(), match.start() + end))
        self.url_starts = [start for start, _ in self.urls]
        self.newlines = [match.start() for match in _NEWLINE.finditer(text)]
        self.marks = [match.start() for match in _MARK.finditer(text) if not self.in_url(match.start())]
        self.closers: dict[str, list[int]] = {mark: [] for mark in (*MARKS, FENCE)}
        for i in self.marks:
            if self.closes(i, 1):
                self.closers[text[i]].append(i)
            if text.startswith(FENCE, i) and self.closes(i, len(FENCE)):
                self.closers[FENCE].append(i)

    def closes(self, i: int, width: int) -> bool:
        """Whether a mark of ``width`` at ``i`` can close a span: after a non-space, before a boundary."""
        text = self.text
        after = i + width
        return i > 0 and not text[i - 1].isspace() and (after == len(text) or not _is_word(text[after]))

    def opens(self, i: int, width: int) -> bool:
        """Whether a mark of ``width`` at ``i`` can open a span: after a boundary, before a non-space."""
        text = self.text
        after = i + width
        return (
            (i == 0 or not _is_word(text[i - 1]))
            and after < len(text)
            and not text[after].isspace()
            and text[after] != text[i]
        )

    def in_url(self, i: int) -> bool:
        k = bisect.bisect_right(self.url_starts, i) - 1
        return k >= 0 and self.urls[k][0] <= i < self.urls[k][1]

    def closer(self, mark: str, after: int, same_line: bool) -> int | None:
        """The first position past ``after`` where ``mark`` closes a span, if any (on the same line)."""
        positions = self.closers[mark]
        k = bisect.bisect_right(positions, after)
        if k == len(positions):
            return None
        found = positions[k]
        if same_line:
            line = bisect.bisect_right(self.newlines, after)
            if line < len(self.newlines) and self.newlines[line] < found:
                return None
        return found


def _parse(text: str, inside: frozenset[str]) -> list[Piece]:
    """The pieces of ``text``; ``inside`` names the styles already open around it (never nested twice)."""
    scan = _Scan(text)
    pieces: list[Piece] = []
    plain = 0  # where the text not yet emitted starts; marks before it are taken

    def emit(start: int, end: int, piece: Piece) -> None:
        nonlocal plain
        if plain < start:
            pieces.append(text[plain:start])
        pieces.append(piece)
        plain = end

    for i in scan.marks:  # marks inside a URL are not among them: an address is shown as sent
        if i < plain:
            continue
        if text.startswith(FENCE, i) and scan.opens(i, len(FENCE)):
            end = scan.closer(FENCE, i + len(FENCE), same_line=False)
            if end is not None:
                emit(i, end + len(FENCE), ("code", [text[i + len(FENCE) : end]]))
                continue
        char = text[i]
        tag = MARKS[char]
        if tag not in inside and scan.opens(i, 1) and not text.startswith(FENCE, i):
            end = scan.closer(char, i + 1, same_line=True)
            if end is not None:
                inner = text[i + 1 : end]
                children: list[Piece] = [inner] if char == "`" else _parse(inner, inside | {tag})
                emit(i, end + 1, (tag, children))
    if plain < len(text):
        pieces.append(text[plain:])
    return pieces
