"""Values an attacker (or an unlucky upstream task) can put in a message field.

Shared by the hostile-input tests (``tests/test_validation.py``) and the property-based ones
(``tests/test_validation_properties.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

MEGABYTE = 1 << 20


def _boom(*_: Any) -> NoReturn:
    raise RuntimeError("hostile")


class Hostile:
    """Every dunder a validator may call raises."""

    __eq__ = __ne__ = __lt__ = __hash__ = __repr__ = __str__ = __len__ = __iter__ = __bool__ = _boom  # type: ignore[assignment]
    __float__ = __int__ = __index__ = __contains__ = __getitem__ = _boom


class HostileStr(str):
    """A string whose own methods all raise: only ``str``'s base methods may be used on it."""

    __eq__ = __ne__ = __hash__ = __repr__ = __str__ = __len__ = __iter__ = __contains__ = _boom  # type: ignore[assignment]
    strip = split = encode = startswith = isascii = isdecimal = lower = __getitem__ = _boom  # type: ignore[assignment]


class HostileKey(str):
    """A dict key that hashes like a string but fails every comparison."""

    __hash__ = str.__hash__
    __eq__ = __ne__ = __repr__ = _boom  # type: ignore[assignment]


class PretendStr:
    """``isinstance(x, str)`` is True, but it is no string."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return str


class HostileMapping(Mapping[str, Any]):
    """A mapping that claims one key and fails to produce it."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("hostile")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("hostile")

    def __len__(self) -> int:
        return 1


class HostileList(list[Any]):
    __iter__ = __len__ = __getitem__ = _boom  # type: ignore[assignment]


def deep_list(depth: int = 50_000) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def deep_dict(depth: int = 50_000) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"text": value}
    return value


#: (id, value): each is refused in every message field.
ADVERSARIAL: list[tuple[str, Any]] = [
    ("nan", float("nan")),
    ("inf", float("inf")),
    ("-inf", float("-inf")),
    ("huge-int", 10**5000),
    ("bytes", b"+31612345678"),
    ("bytearray", bytearray(b"x")),
    ("set", {"text"}),
    ("frozenset", frozenset({"contact"})),
    ("complex", 1 + 2j),
    ("object", object()),
    ("type", str),
    ("ellipsis", ...),
    ("lone-surrogate", "\ud800"),
    ("surrogate-in-number", "+3161234\udfff5678"),
    ("bad-ipv6-url", "http://[::1"),
    ("deep-json-array", "[" * 50_000),
    ("deep-json-object", '{"text": ' * 50_000),
    ("deep-list", deep_list()),
    ("deep-dict", deep_dict()),
    ("non-string-keys", {1: "a", "b": "c"}),
    ("none-key", {None: "x"}),
    ("megabyte-string", "9" * MEGABYTE),
    ("megabyte-dots", "a" + "." * MEGABYTE + "@b.c"),
    ("megabyte-list", ["x"] * (MEGABYTE // 8)),
    ("megabyte-dict", {str(i): "v" for i in range(MEGABYTE // 16)}),
    ("hostile", Hostile()),
    ("hostile-str", HostileStr("whatsapp")),  # valid where any string is (from_, ids)
    ("pretend-str", PretendStr()),
    ("hostile-mapping", HostileMapping()),
    ("hostile-list", HostileList(["a"])),
    ("list-of-hostile", [Hostile()]),
    ("dict-of-hostile", {"text": Hostile(), "url": Hostile()}),
    ("hostile-key", {HostileKey("text"): "x"}),
    ("empty", ""),
    ("blank", " \t\n"),
    ("arabic-indic-digits", "+٣١٦١٢٣٤٥٦٧٨"),
    ("json-nan", '{"text": NaN}'),
    ("json-list-of-lists", '[["a"]]'),
]
