"""Content redaction: what the judge model may see of a sample.

Not to be confused with :mod:`controller.scrubbing`, which hides *our secrets* (API keys,
tokens) from logs and error messages. This module hides *users' data* from the judge
endpoint, as the rule's ``judge.redaction`` says:

- ``fields``: which sample fields are sent (``input``, ``output``; default both). A field
  left out is sent as ``[withheld]``.
- ``roles``: in multi-turn conversations, which turn roles are sent (default all); other
  turns are dropped (e.g. keep ``user`` and ``assistant``, drop ``tool`` results).
- ``patterns``: the rule's regular expressions, each match replaced by its literal
  ``replacement`` (default ``[REDACTED]``); applied first, in order.
- ``builtins``: named patterns, applied after the rule's own:

  - ``email``: ``local@domain.tld`` addresses -> ``[EMAIL]``.
  - ``cardNumber``: 13-19 digits, optionally grouped by spaces or dashes, that pass the
    Luhn check -> ``[CARD]``. Numbers failing the check are not card numbers and are kept.
  - ``phone``: 8-15 digits with an optional leading ``+`` or ``00`` and separators
    (space, dot, dash, parentheses) -> ``[PHONE]``. It cannot tell a phone number from
    another long number (an order id, a long amount), which it redacts too; ISO dates
    (``2025-01-31``) are kept. It does not find numbers written in words.

  These are heuristics, not a PII detector: they catch the common written forms and
  miss the rest (names, addresses, national ids). Add the rule's own patterns for data
  you know the shape of.

Redaction happens before any prompt is built, so it covers every mode and stage, the
repair prompt (which only carries the judge's own, already redacted, reply) and every
structured-output fallback. The verdict cache key includes :attr:`ContentRedactor.fingerprint`,
so verdicts of unredacted text are never reused under a changed redaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from controller.models import Turn
from controller.models.rule import BuiltinPattern, Redaction
from controller.models.sample import Conversation

BUILTINS_VERSION = "1"
"""Bump when a built-in pattern changes: it is part of the cache key."""
WITHHELD = "[withheld]"

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    # not inside a longer run of digits and separators, on either side
    r"(?<![\w+])(?<!\d[ .()-])(?<!\d[ .()-]{2})"
    r"(?:\+|\b00)?\(?\d(?:[ .()-]{0,2}\d){7,14}\b(?![ .()-]{0,2}\d)"
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = _digits(match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _ISO_DATE.fullmatch(text.strip()):
        return text
    return "[PHONE]" if 8 <= len(_digits(text)) <= 15 else text


Replacer = Callable[[str], str]

_BUILTIN_SUBS: dict[BuiltinPattern, Replacer] = {
    BuiltinPattern.EMAIL: lambda text: _EMAIL.sub("[EMAIL]", text),
    BuiltinPattern.CARD_NUMBER: lambda text: _CARD.sub(_card, text),
    BuiltinPattern.PHONE: lambda text: _PHONE.sub(_phone, text),
}
_BUILTIN_ORDER = (BuiltinPattern.EMAIL, BuiltinPattern.CARD_NUMBER, BuiltinPattern.PHONE)


def _substitution(rx: re.Pattern[str], replacement: str) -> Replacer:
    """Every match of ``rx`` replaced by ``replacement`` literally (no backreferences)."""

    def sub(text: str) -> str:
        return rx.sub(lambda _match: replacement, text)

    return sub


class ContentRedactor:
    """Applies one rule's ``judge.redaction`` to a sample's input and output."""

    def __init__(self, spec: Redaction | None) -> None:
        self.spec = spec
        self._subs: list[Replacer] = []
        if spec is None:
            return
        for p in spec.patterns:
            rx = re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0)
            self._subs.append(_substitution(rx, p.replacement))
        wanted = set(spec.builtins)
        self._subs.extend(_BUILTIN_SUBS[b] for b in _BUILTIN_ORDER if b in wanted)

    @property
    def active(self) -> bool:
        return self.spec is not None

    @property
    def fingerprint(self) -> str | None:
        """A digest of the configuration (None without redaction), for the cache key."""
        if self.spec is None:
            return None
        material = {"builtins_version": BUILTINS_VERSION, **self.spec.model_dump(mode="json")}
        blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def text(self, text: str) -> str:
        for sub in self._subs:
            text = sub(text)
        return text

    def conversation(self, value: Conversation, field: str) -> Conversation:
        """One field as the judge may see it."""
        spec = self.spec
        if spec is None:
            return value
        if spec.fields is not None and field not in spec.fields:
            return WITHHELD
        if isinstance(value, str):
            return self.text(value)
        roles = None if spec.roles is None else set(spec.roles)
        turns = [t if isinstance(t, Turn) else Turn.model_validate(t) for t in value]
        return [
            Turn(role=t.role, content=self.text(t.content))
            for t in turns
            if roles is None or t.role in roles
        ]

    def sample(self, conv_in: Conversation, conv_out: Conversation) -> tuple[Any, Any]:
        return self.conversation(conv_in, "input"), self.conversation(conv_out, "output")
