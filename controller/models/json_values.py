"""Strict JSON decoding for everything a client sends: finite numbers, bounded nesting.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON at all), turns
``1e999`` into ``inf`` and raises a bare ``ValueError`` on integers over 4300 digits. A
non-finite number that reaches a pydantic model is either refused there with a confusing
message or, in a field that allows anything (unknown fields are kept), stored and
serialised back as ``null``, which breaks every later read of the record. So numbers are
checked where they are decoded: a refused literal is kept as a marker and the record's
first offending value is named by its path (``latency_ms``, ``input[2].content``).

Nesting is bounded too (:data:`MAX_DEPTH`): a sample is a flat record with conversations a
few levels deep, and a 900-deep record only exists to exhaust recursion somewhere
downstream (validation, serialisation, logging).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays accepted in one record (the record is level 1)."""
MAX_INT_DIGITS = 30
"""Longer integer literals are refused: no field of any record needs more than 10^30."""


class UnsafeJson(ValueError):
    """A decoded value that must not be accepted, with the path of the value."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"field {path!r}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


class _Refused(str):
    """Marks a number literal refused at decode time (the literal is the string)."""

    __slots__ = ()


_seen = threading.local()
"""Per thread: whether the document being decoded produced a refused literal (so the
common case, a clean and shallow record, skips the walk of :func:`check`)."""


def _refuse(literal: str) -> _Refused:
    _seen.refused = True
    return _Refused(literal)


def _constant(literal: str) -> _Refused:
    return _refuse(literal)


def _float(literal: str) -> float | _Refused:
    value = float(literal)
    return value if math.isfinite(value) else _refuse(literal)


def _int(literal: str) -> int | _Refused:
    digits = len(literal) - (literal[0] == "-")
    return int(literal) if digits <= MAX_INT_DIGITS else _refuse(literal)


def needs_check(text: str, start: int = 0, end: int | None = None,
                max_depth: int = MAX_DEPTH) -> bool:
    """Whether the value just decoded from ``text[start:end]`` may fail :func:`check`: it
    produced a refused literal, or it holds enough brackets to nest too deep (brackets in
    strings count too: a cheap over-estimate that only costs a walk)."""
    end = len(text) if end is None else end
    return bool(getattr(_seen, "refused", False)) or \
        text.count("[", start, end) + text.count("{", start, end) > max_depth


DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant)
"""A decoder whose refused numbers come out as markers; always follow with :func:`check`."""


def _why(literal: _Refused) -> str:
    shown = literal if len(literal) <= 24 else literal[:20] + "..."
    if literal.lstrip("-").isdigit():
        return f"integer {shown} is too large (over {MAX_INT_DIGITS} digits)"
    return (f"{shown} is not a finite number (NaN, Infinity and numbers that overflow a "
            "double are refused)")


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`UnsafeJson` naming the first refused number or the first value nested
    deeper than ``max_depth``; iterative, so it never recurses itself."""
    stack: list[tuple[Any, str, int, str]] = [(value, "", 1, "")]
    while stack:
        node, path, depth, top = stack.pop()
        if type(node) is _Refused:
            raise UnsafeJson(path, _why(node))
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            if isinstance(node, float) and not math.isfinite(node):
                raise UnsafeJson(path, _why(_Refused(repr(node))))
            continue
        if depth > max_depth:  # named by the record's field, not a 30-level path
            raise UnsafeJson(top, f"nested deeper than {max_depth} levels")
        for key, child in items:
            if isinstance(child, dict | list | float | _Refused):
                child_path = _join(path, key)
                stack.append((child, child_path, depth + 1, top or child_path))


def decode(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one JSON document with refused numbers as markers: follow with
    :func:`check` (:func:`loads` does both)."""
    _seen.refused = False
    try:
        return DECODER.decode(text)
    except RecursionError:
        raise UnsafeJson("", f"nested deeper than {max_depth} levels") from None


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one JSON document strictly; ``json.JSONDecodeError`` for bad syntax,
    :class:`UnsafeJson` for a refused number or too deep a nesting (``RecursionError`` from
    the C decoder on absurd nesting is reported as the latter)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    value = decode(text, max_depth=max_depth)
    if needs_check(text, max_depth=max_depth):
        check(value, max_depth=max_depth)
    return value


def raw_decode(text: str, pos: int, *, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """:meth:`json.JSONDecoder.raw_decode` with refused numbers as markers: the caller
    runs :func:`check` on the value when :func:`needs_check` says so (and can go on after
    ``end`` when it fails)."""
    _seen.refused = False
    try:
        return DECODER.raw_decode(text, pos)
    except RecursionError:
        raise UnsafeJson("", f"nested deeper than {max_depth} levels") from None
