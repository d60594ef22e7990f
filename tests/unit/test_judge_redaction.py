"""Content redaction before the judge: built-in patterns, the rule's patterns, field and
role allow-lists, and the validation of the spec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.judge.redaction import WITHHELD, ContentRedactor, luhn_ok
from controller.models import Turn
from controller.models.errors import field_errors
from controller.models.rule import JudgeSpec, Redaction


def redactor(**spec: object) -> ContentRedactor:
    return ContentRedactor(Redaction.model_validate(spec))


ALL = redactor(builtins=["email", "cardNumber", "phone"])


class TestBuiltins:
    @pytest.mark.parametrize(
        ("text", "want"),
        [
            ("mail jane.doe+x@mail.example.co.uk now", "mail [EMAIL] now"),
            ("card 4111 1111 1111 1111, thanks", "card [CARD], thanks"),
            ("card 4111-1111-1111-1111", "card [CARD]"),
            ("amex 378282246310005.", "amex [CARD]."),
            ("call +44 20 7946 0958 today", "call [PHONE] today"),
            ("call (555) 123-4567", "call [PHONE]"),
            ("call 0049 30 1234567", "call [PHONE]"),
        ],
    )
    def test_redacted(self, text: str, want: str) -> None:
        assert ALL.text(text) == want

    @pytest.mark.parametrize(
        "text",
        [
            "order 12345 shipped on 2025-01-31",  # short number, ISO date
            "version 1.2.3 and 10:30",
            "4111 1111 1111 1112 fails Luhn and has 16 digits",  # not a card, too long for a phone
            "not an email: jane@localhost",
            "[[judge: fully,minor]]",
        ],
    )
    def test_kept(self, text: str) -> None:
        assert ALL.text(text) == text

    def test_luhn(self) -> None:
        assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
        assert not luhn_ok("4111111111111112")

    @settings(max_examples=100, derandomize=True)
    @given(st.text(alphabet="abc @.+-0123456789()", max_size=60))
    def test_idempotent(self, text: str) -> None:
        once = ALL.text(text)
        assert ALL.text(once) == once


class TestRulePatterns:
    def test_literal_replacement_first_then_builtins(self) -> None:
        r = redactor(
            patterns=[{"regex": r"ACCT-(\d{6,})", "replacement": r"[ACCOUNT \1]"}],
            builtins=["phone"],
        )
        # the rule's pattern wins over phone; backreferences are not expanded
        assert r.text("ACCT-12345678 or 0049 30 1234567") == r"[ACCOUNT \1] or [PHONE]"

    def test_ignore_case(self) -> None:
        r = redactor(patterns=[{"regex": "secret project \\w+", "ignoreCase": True}])
        assert r.text("the SECRET Project Falcon") == "the [REDACTED]"

    def test_fields_and_roles(self) -> None:
        r = redactor(fields=["output"], roles=["user", "assistant"])
        conv = [Turn(role="user", content="hi"), Turn(role="tool", content="ssn 123"),
                Turn(role="assistant", content="ok")]
        conv_in, conv_out = r.sample("my question", conv)
        assert conv_in == WITHHELD
        assert [t.role for t in conv_out] == ["user", "assistant"]

    def test_no_redaction_is_identity(self) -> None:
        r = ContentRedactor(None)
        assert r.sample("a@b.com", "x") == ("a@b.com", "x") and r.fingerprint is None

    def test_fingerprint_follows_the_config(self) -> None:
        a = redactor(builtins=["email"]).fingerprint
        assert a == redactor(builtins=["email"]).fingerprint
        assert a != redactor(builtins=["email", "phone"]).fingerprint
        assert a != redactor(builtins=["email"], roles=["user"]).fingerprint


class TestValidation:
    @pytest.mark.parametrize(
        ("redaction", "path", "words"),
        [
            ({"patterns": [{"regex": "a("}]}, "redaction.patterns[0].regex", "not a valid"),
            ({"patterns": [{"regex": "x*"}]}, "redaction.patterns[0].regex", "empty string"),
            ({"builtins": ["ssn"]}, "redaction.builtins[0]", "email"),
            ({"fields": []}, "redaction.fields", "at least 1"),
            ({"fields": ["ts"]}, "redaction.fields[0]", "input"),
            ({"pattern": []}, "redaction.pattern", "unknown field"),
        ],
    )
    def test_refused_with_the_field_named(
        self, redaction: dict[str, object], path: str, words: str
    ) -> None:
        with pytest.raises(ValidationError) as info:
            JudgeSpec.model_validate({"model": "m", "redaction": redaction})
        [(got_path, reason)] = field_errors(info.value)
        assert got_path == path and words in reason
