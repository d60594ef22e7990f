"""Reading sample and feedback files (JSON Lines or a JSON array) without ever raising.

One bad line must not cost the rest of a file: every line is parsed on its own, and a
rejected record becomes a structured :class:`~controller.models.ingest.Reject` (line,
field, reason, id, kind) with a one-line message naming the file, the line and the field
(``samples.jsonl:12: field 'cohort': Input should be 'baseline' or 'canary'``). The same
parser serves files (``canaryctl analyze``) and request bodies (the ingestion API); a
caller that knows more (which rules exist, what the client may report) passes a
``check`` that refuses a parsed record with its own kind, e.g. :func:`unknown_rule`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from controller.models import Feedback, Sample, json_values
from controller.models.errors import field_errors, format_field_errors
from controller.models.ingest import Reject, RejectKind
from controller.models.json_values import UnsafeJson

MAX_MESSAGES = 50
"""Messages kept per report; the rest are only counted, so a huge bad file stays cheap."""

# Skip reasons (keys of LoadReport.skipped): every reject kind, plus duplicates (dropped,
# not refused: a client's retry is not an error).
INVALID_JSON = RejectKind.INVALID_JSON.value
NOT_AN_OBJECT = RejectKind.NOT_AN_OBJECT.value
INVALID_RECORD = RejectKind.INVALID_RECORD.value
ENCODING = RejectKind.ENCODING.value
UNKNOWN_RULE = RejectKind.UNKNOWN_RULE.value
DUPLICATE = "duplicate"

M = TypeVar("M", bound=BaseModel)


class Problem(NamedTuple):
    """Why a caller's ``check`` refuses a record that parsed."""

    kind: RejectKind
    field: str | None
    reason: str


def unknown_rule(
    exists: Callable[[str, str | None], bool],
) -> Callable[[Sample | Feedback], Problem | None]:
    """A ``check`` refusing records whose ``rule`` (in ``namespace``) is no CanaryRule, so a
    typo is named instead of filling a store nobody reads. ``exists(rule, namespace)``
    answers from the controller's rule directory (namespace ``None``: the caller's)."""

    def check(record: Sample | Feedback) -> Problem | None:
        if exists(record.rule, record.namespace):
            return None
        where = f" in namespace {record.namespace!r}" if record.namespace else ""
        return Problem(RejectKind.UNKNOWN_RULE, "rule", f"no CanaryRule {record.rule!r}{where}")

    return check



@dataclass
class LoadReport:
    """What happened to each record of one input: counts by outcome and capped messages."""

    source: str
    accepted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    blank_lines: int = 0
    out_of_order: int = 0
    empty: bool = False
    messages: list[str] = field(default_factory=list)
    messages_dropped: int = 0
    max_messages: int = MAX_MESSAGES
    rejects: list[Reject] = field(default_factory=list)
    """Refused records, structured, capped at ``max_messages``."""
    rejects_dropped: int = 0
    record_lines: list[int] = field(default_factory=list)
    """The line of each accepted record, in order (to name a record refused later)."""

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def ok(self) -> bool:
        """True when every record was accepted and there was at least one."""
        return not self.empty and self.total_skipped == 0

    def note(self, message: str) -> None:
        if len(self.messages) < self.max_messages:
            self.messages.append(message)
        else:
            self.messages_dropped += 1

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        self.note(message)

    def reject(
        self,
        kind: RejectKind,
        line: int,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        record_id: str | None = None,
    ) -> None:
        """Count a refused record and keep it structured (and as a message)."""
        self.skip(kind.value, message)
        if len(self.rejects) >= self.max_messages:
            self.rejects_dropped += 1
            return
        self.rejects.append(Reject(
            line=line, field=field, reason=reason or message.split(": ", 1)[-1],
            id=record_id, kind=kind, message=message,
        ))

    @property
    def total_rejected(self) -> int:
        """Refused records (duplicates are dropped, not refused)."""
        return self.total_skipped - self.skipped.get(DUPLICATE, 0)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        parts = [f"{self.source}: {self.accepted} accepted"]
        parts += [f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(self.skipped.items())]
        if self.out_of_order:
            parts.append(f"{self.out_of_order} out of time order (kept)")
        if self.empty:
            parts.append("no records")
        return ", ".join(parts)


def _lines(data: bytes | str) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each line; text is None when the line is not UTF-8."""
    if isinstance(data, str):
        for number, line in enumerate(data.split("\n"), start=1):
            yield number, line
        return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None


def _as_text(data: bytes | str) -> str | None:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _array_items(text: str, report: LoadReport) -> Iterator[tuple[int, Any]]:
    """(line, value) for each element of a top-level JSON array, parsed one at a time so
    a bad element is named by its line; a syntax error ends the array (no resync point)."""
    pos = text.index("[") + 1
    expect_value = True
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            line = _line_of(text, pos)
            report.reject(RejectKind.INVALID_JSON, line,
                          f"{report.source}:{line}: unterminated array")
            return
        ch = text[pos]
        if ch == "]":
            rest = text[pos + 1 :].strip()
            if rest:
                line = _line_of(text, pos + 1)
                report.reject(RejectKind.INVALID_JSON, line,
                              f"{report.source}:{line}: extra data after the array")
            return
        if ch == "," and not expect_value:
            pos += 1
            expect_value = True
            continue
        if not expect_value:
            line = _line_of(text, pos)
            report.reject(
                RejectKind.INVALID_JSON, line,
                f"{report.source}:{line}: expected ',' or ']' between records;"
                " the rest of the array is skipped",
            )
            return
        try:
            value, end = json_values.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            report.reject(
                RejectKind.INVALID_JSON, exc.lineno,
                f"{report.source}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno});"
                " the rest of the array is skipped",
                reason=f"invalid JSON: {exc.msg} (column {exc.colno})",
            )
            return
        except UnsafeJson as exc:
            line = _line_of(text, pos)
            report.reject(RejectKind.INVALID_JSON, line,
                          f"{report.source}:{line}: {exc}; the rest of the array is skipped",
                          reason=exc.reason)
            return
        line = _line_of(text, pos)
        start, pos = pos, end
        expect_value = False
        try:
            if json_values.needs_check(text, start, end):
                json_values.check(value)
        except UnsafeJson as exc:
            _unsafe(report, line, exc, value)
            continue
        yield line, value


def _unsafe(report: LoadReport, line: int, exc: UnsafeJson, value: Any) -> None:
    """A record refused at decoding (a non-finite number, too deep a nesting), named by
    the path of the offending value."""
    rid = value.get("id") if isinstance(value, dict) else None
    report.reject(RejectKind.INVALID_RECORD, line, f"{report.source}:{line}: {exc}",
                  field=exc.path or None, reason=exc.reason,
                  record_id=rid if isinstance(rid, str) else None)


def _json_lines(data: bytes | str, report: LoadReport) -> Iterator[tuple[int, Any]]:
    for number, line in _lines(data):
        where = f"{report.source}:{number}"
        if line is None:
            report.reject(RejectKind.ENCODING, number, f"{where}: not valid UTF-8")
            continue
        if not line.strip():
            report.blank_lines += 1
            continue
        try:
            value = json_values.decode(line)
        except json.JSONDecodeError as exc:
            report.reject(RejectKind.INVALID_JSON, number,
                          f"{where}: invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except UnsafeJson as exc:
            _unsafe(report, number, exc, None)
            continue
        try:
            if json_values.needs_check(line):
                json_values.check(value)
        except UnsafeJson as exc:
            _unsafe(report, number, exc, value)
            continue
        yield number, value


def _values(data: bytes | str, report: LoadReport) -> Iterator[tuple[int, Any]]:
    """Pick the format: a document whose first non-blank character is '[' is one JSON
    array; anything else is JSON Lines."""
    head = data.lstrip()[:1]
    if head in ("[", b"["):
        text = _as_text(data)
        if text is None:
            report.reject(RejectKind.ENCODING, 1,
                          f"{report.source}:1: a JSON array must be valid UTF-8")
            return
        yield from _array_items(text, report)
        return
    if isinstance(data, bytes) and data.startswith(b"\xef\xbb\xbf["):
        yield from _values(data[3:], report)
        return
    yield from _json_lines(data, report)


def _record_id(value: dict[str, Any]) -> str | None:
    rid = value.get("id")
    return rid if isinstance(rid, str) and rid else None


def _validate(
    model: type[M], value: Any, number: int, report: LoadReport,
    check: Callable[[Any], Problem | None] | None,
) -> M | None:
    """One parsed JSON value as a record, or None after rejecting it."""
    where = f"{report.source}:{number}"
    if not isinstance(value, dict):
        report.reject(RejectKind.NOT_AN_OBJECT, number,
                      f"{where}: expected a JSON object, got {_describe(value)}")
        return None
    rid = _record_id(value)
    try:
        record = model.model_validate(value)
    except ValidationError as exc:
        errors = field_errors(exc)
        path, reason = errors[0] if errors else ("", "invalid record")
        report.reject(RejectKind.INVALID_RECORD, number, f"{where}: {format_field_errors(exc)}",
                      field=path or None, reason=reason, record_id=rid)
        return None
    except (RecursionError, ValueError, TypeError) as exc:  # defensive: never raise
        report.reject(RejectKind.INVALID_RECORD, number,
                      f"{where}: {type(exc).__name__}: {exc}"[:300], record_id=rid)
        return None
    problem = check(record) if check is not None else None
    if problem is not None:
        label = f"field {problem.field!r}: " if problem.field else ""
        report.reject(problem.kind, number, f"{where}: {label}{problem.reason}",
                      field=problem.field, reason=problem.reason, record_id=rid)
        return None
    return record


def _parse(
    data: bytes | str, source: str, model: type[M], *, dedup: bool, max_messages: int,
    check: Callable[[Any], Problem | None] | None = None,
) -> tuple[list[M], LoadReport, list[int]]:
    report = LoadReport(source=source, max_messages=max_messages)
    records: list[M] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    for number, value in _values(data, report):
        where = f"{source}:{number}"
        record = _validate(model, value, number, report, check)
        if record is None:
            continue
        if dedup:
            rid = str(getattr(record, "id", ""))
            if rid in first_line:
                report.skip(
                    DUPLICATE,
                    f"{where}: duplicate id {rid!r} (first at line {first_line[rid]}), dropped",
                )
                continue
            first_line[rid] = number
        records.append(record)
        lines.append(number)
    report.accepted = len(records)
    report.record_lines = lines
    if not records and report.total_skipped == 0:
        report.empty = True
        report.note(f"{source}: no records")
    return records, report, lines


def parse_samples(
    data: bytes | str, source: str = "<input>", *, max_messages: int = MAX_MESSAGES,
    check: Callable[[Sample], Problem | None] | None = None,
) -> tuple[list[Sample], LoadReport]:
    """Samples from JSON Lines or a JSON array; never raises on bad input.

    Duplicated ids are dropped (the first record wins). Timestamps going backwards are
    reported (``out_of_order``) but the records are kept: replay sorts by ``ts``.
    ``check`` may refuse a parsed sample (e.g. :func:`unknown_rule`).
    """
    samples, report, lines = _parse(data, source, Sample, dedup=True,
                                    max_messages=max_messages, check=check)
    latest: datetime | None = None
    latest_line = 0
    for sample, number in zip(samples, lines, strict=True):
        if latest is not None and sample.ts < latest:
            report.out_of_order += 1
            report.note(
                f"{source}:{number}: ts {sample.ts.isoformat()} is earlier than line "
                f"{latest_line}'s {latest.isoformat()}; kept (replay sorts by ts)"
            )
        else:
            latest, latest_line = sample.ts, number
    return samples, report


def parse_feedback(
    data: bytes | str, source: str = "<input>", *, max_messages: int = MAX_MESSAGES,
    check: Callable[[Feedback], Problem | None] | None = None,
) -> tuple[list[Feedback], LoadReport]:
    """Feedback records; never raises. Several records for one id are all kept, in
    order: each is a later correction of the same sample (the store merges them)."""
    records, report, _ = _parse(data, source, Feedback, dedup=False,
                                max_messages=max_messages, check=check)
    return records, report


def _read(path: str | Path) -> tuple[bytes | None, str, str | None]:
    name = Path(path).name if str(path) != "-" else "<stdin>"
    try:
        return Path(path).read_bytes(), name, None
    except OSError as exc:
        return None, name, f"{path}: cannot read: {exc.strerror or exc}"


def load_samples(
    path: str | Path, *, max_messages: int = MAX_MESSAGES
) -> tuple[list[Sample], LoadReport]:
    """Samples from a file; an unreadable file is a report, not an exception."""
    return _load(path, parse_samples, max_messages)


def load_feedback(
    path: str | Path, *, max_messages: int = MAX_MESSAGES
) -> tuple[list[Feedback], LoadReport]:
    """Feedback from a file; an unreadable file is a report, not an exception."""
    return _load(path, parse_feedback, max_messages)


def _load(path: str | Path, parse: Callable[..., tuple[list[M], LoadReport]],
          max_messages: int) -> tuple[list[M], LoadReport]:
    data, name, error = _read(path)
    if data is None:
        report = LoadReport(source=name, empty=True, max_messages=max_messages)
        report.note(error or f"{name}: cannot read")
        return [], report
    return parse(data, name, max_messages=max_messages)
