"""OpenTelemetry traces (OTLP/HTTP, protobuf or JSON) as sample records. Pure: bytes in,
samples and a report out; the HTTP server stores them and answers with :func:`otlp_answer`.

Why: LLM services already emit one span per model call with the GenAI semantic
conventions (``gen_ai.*``). Pointing their OTLP exporter at the controller
(``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://llm-canary:8080/v1/traces``) makes those
spans samples, without a line of reporting code.

Which spans become samples: the rule comes from ``llm_canary.rule`` on the span or on its
resource (``OTEL_RESOURCE_ATTRIBUTES=llm_canary.rule=support-assistant``). A span with
the rule on the span itself is always a sample; with the rule only on the resource, a
span is a sample when its ``gen_ai.operation.name`` is one that answers a user
(:data:`ANSWERING_OPERATIONS`). ``llm_canary.sample=false`` opts a span out. Other spans
are ignored and counted (``no_rule``, ``not_an_answer``, ``opted_out``), never rejected:
a service exports all its spans, and most are not samples.

Fields (span attributes override resource attributes): ``llm_canary.cohort`` (default
``baseline``), ``llm_canary.revision``, ``llm_canary.namespace`` (else the resource's
``k8s.namespace.name``), ``llm_canary.queue``, ``llm_canary.risk``, ``llm_canary.task``,
``llm_canary.fallback``, ``llm_canary.decision``, ``llm_canary.label``,
``llm_canary.policy_violation``, ``llm_canary.id`` (default ``<trace id>-<span id>``: send
feedback with it), ``llm_canary.cost_usd`` (else token usage times ``spec.pricing``; no
price means unknown cost), ``llm_canary.input`` / ``llm_canary.output`` (plain text that
overrides the captured content). ``ts`` is the span's end, ``latency_ms`` its duration.

Content, in the forms instrumentations emit (first found wins):
``gen_ai.input.messages`` / ``gen_ai.output.messages`` / ``gen_ai.system_instructions``
as span attributes (structured or JSON strings, semconv 1.37+) or on a
``gen_ai.client.inference.operation.details`` span event; ``gen_ai.content.prompt`` /
``gen_ai.content.completion`` events with ``gen_ai.prompt`` / ``gen_ai.completion``
(semconv 1.26-1.27); ``gen_ai.{system,user,assistant,tool}.message`` and ``gen_ai.choice``
events (1.28-1.36, attributes ``content`` / ``message`` or ``gen_ai.event.content``); flat
``gen_ai.prompt.N.content`` / ``gen_ai.completion.N.content`` attributes (OpenLLMetry).
Content sent as log records (the Logs API form of the events) is not read: export spans.
A span without input content is rejected naming the setting to turn on; an errored span
without output gets an empty output (the user got nothing).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import ValidationError

from controller.models import Sample
from controller.models.errors import field_errors, format_field_errors
from controller.models.ingest import RejectKind
from controller.models.rule import ModelPrice
from controller.sources.samples_io import LoadReport, Problem

PREFIX = "llm_canary."
RULE_ATTR = PREFIX + "rule"
ANSWERING_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "invoke_agent", "invoke_workflow"}
)
"""GenAI operations whose output a user sees (embeddings, tools, retrieval are steps)."""
PROTOBUF = "application/x-protobuf"
JSON_TYPE = "application/json"
MAX_DEPTH = 32
MAX_INFLATED = 32 * 1024 * 1024
STATUS_ERROR = 2
NO_CONTENT = ("no prompt content on the span: enable content capture in the instrumentation "
              "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true) or set "
              "llm_canary.input / llm_canary.output")

Pricing = Callable[[str, str | None], Sequence[ModelPrice]]
"""``(rule, namespace) -> the rule's spec.pricing`` (empty when unknown)."""


class OtlpError(ValueError):
    """The payload as a whole is unusable; ``status`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class SpanView:
    """One span, decoded from either encoding into plain Python values."""

    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status_code: int = 0


@dataclass
class OtlpResult:
    samples: list[Sample]
    report: LoadReport
    """Rejected spans as structured rejects (``line``: the span's 1-based position in the
    request, ``kind``: invalid_span, unknown_rule, ...)."""
    spans: int = 0
    ignored: Counter[str] = field(default_factory=Counter)


# -- decoding ---------------------------------------------------------------------------


def _inflate(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise OtlpError(415, f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, MAX_INFLATED + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"body is not valid {encoding}: {exc}") from exc
    if len(out) > MAX_INFLATED:
        raise OtlpError(413, f"body inflates to over {MAX_INFLATED} bytes")
    return out


def _proto_value(value: AnyValue, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise OtlpError(400, "attribute value nested too deeply")
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_proto_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _proto_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


def _proto_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _proto_value(kv.value) for kv in kvs}


def _from_protobuf(body: bytes) -> Iterator[SpanView]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise OtlpError(400, f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from exc
    for rs in request.resource_spans:
        resource = _proto_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield SpanView(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    attributes=_proto_attrs(span.attributes), resource=resource,
                    events=[(e.name, _proto_attrs(e.attributes)) for e in span.events],
                    status_code=span.status.code,
                )


def _json_int(value: Any, where: str) -> int:
    """OTLP/JSON carries 64-bit integers as decimal strings (numbers are accepted too)."""
    if isinstance(value, bool):
        raise OtlpError(400, f"{where}: expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise OtlpError(400, f"{where}: expected an integer, got {value!r}"[:200])


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise OtlpError(400, f"{where}: nested too deeply")
    if not isinstance(value, dict) or not value:
        return None
    key, inner = next(iter(value.items()))
    if key == "stringValue":
        return str(inner)
    if key == "boolValue":
        return bool(inner)
    if key == "intValue":
        return _json_int(inner, where)
    if key == "doubleValue":
        return float(inner)
    if key == "bytesValue":
        return base64.b64decode(str(inner), validate=False)
    if key == "arrayValue":
        return [_json_value(v, where, depth + 1) for v in _list(inner, "values", where)]
    if key == "kvlistValue":
        return _json_attrs(_list(inner, "values", where), where, depth + 1)
    return None


def _list(obj: Any, key: str, where: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise OtlpError(400, f"{where}: expected an object")
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise OtlpError(400, f"{where}.{key}: expected an array")
    return value


def _json_attrs(kvs: list[Any], where: str, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, kv in enumerate(kvs):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise OtlpError(400, f"{where}[{i}]: expected {{key, value}}")
        out[kv["key"]] = _json_value(kv.get("value"), f"{where}[{i}]", depth)
    return out


_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _status_code(value: Any, where: str) -> int:
    """OTLP/JSON says integers; the protobuf JSON mapping's enum names are accepted too."""
    return _STATUS_NAMES[value] if value in _STATUS_NAMES else _json_int(value, where)


def _json_span(span: Any, resource: dict[str, Any], where: str) -> SpanView:
    if not isinstance(span, dict):
        raise OtlpError(400, f"{where}: expected an object")
    events = []
    for j, ev in enumerate(_list(span, "events", where)):
        ew = f"{where}.events[{j}]"
        name = ev.get("name", "") if isinstance(ev, dict) else ""
        events.append((str(name), _json_attrs(_list(ev, "attributes", ew), ew)))
    found = span.get("status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    return SpanView(
        trace_id=str(span.get("traceId", "")).lower(), span_id=str(span.get("spanId", "")).lower(),
        start_ns=_json_int(span.get("startTimeUnixNano", 0), f"{where}.startTimeUnixNano"),
        end_ns=_json_int(span.get("endTimeUnixNano", 0), f"{where}.endTimeUnixNano"),
        attributes=_json_attrs(_list(span, "attributes", where), f"{where}.attributes"),
        resource=resource, events=events,
        status_code=_status_code(status.get("code", 0), f"{where}.status.code"),
    )


def _from_json(body: bytes) -> Iterator[SpanView]:
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise OtlpError(400, f"not valid JSON: {exc}"[:300]) from exc
    for i, rs in enumerate(_list(doc, "resourceSpans", "body")):
        where = f"resourceSpans[{i}]"
        res = rs.get("resource") if isinstance(rs, dict) else None
        resource = _json_attrs(_list(res, "attributes", f"{where}.resource"),
                               f"{where}.resource.attributes") if res else {}
        for j, ss in enumerate(_list(rs, "scopeSpans", where)):
            sw = f"{where}.scopeSpans[{j}]"
            for k, span in enumerate(_list(ss, "spans", sw)):
                yield _json_span(span, resource, f"{sw}.spans[{k}]")


def decode_spans(body: bytes, content_type: str | None,
                 content_encoding: str | None = None) -> list[SpanView]:
    """Every span of an ``ExportTraceServiceRequest``; :class:`OtlpError` when the
    payload as a whole is unusable (nothing of it is used then)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    raw = _inflate(body, content_encoding)
    if media == PROTOBUF:
        return list(_from_protobuf(raw))
    if media == JSON_TYPE:
        return list(_from_json(raw))
    raise OtlpError(415, f"Content-Type must be {PROTOBUF} or {JSON_TYPE}, got {media!r}")


# -- content ------------------------------------------------------------------------------


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return json.dumps(part, default=str)
    kind = part.get("type", "text")
    if kind == "text" or "content" in part or "text" in part:
        return str(part.get("content", part.get("text", "")))
    if kind == "tool_call":
        args = json.dumps(part.get("arguments"), default=str)
        return f"[tool call {part.get('name', '')}({args})]"
    if kind == "tool_call_response":
        return f"[tool result {json.dumps(part.get('result'), default=str)}]"
    return json.dumps(part, default=str)


def _text(message: Any) -> str:
    """The text of one message in any of the conventions' shapes."""
    message = _maybe_json(message)
    if isinstance(message, str):
        return message
    if isinstance(message, list):
        return "\n".join(_part_text(p) for p in message)
    if not isinstance(message, dict):
        return "" if message is None else str(message)
    if isinstance(message.get("parts"), list):
        return "\n".join(_part_text(p) for p in message["parts"])
    if "message" in message:
        return _text(message["message"])
    content = _maybe_json(message.get("content"))
    if isinstance(content, list):
        return "\n".join(_part_text(p) for p in content)
    return "" if content is None else str(content)


def _turns(messages: Any, default_role: str = "user") -> list[dict[str, str]]:
    messages = _maybe_json(messages)
    if isinstance(messages, str):
        return [{"role": default_role, "content": messages}]
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list):
        return []
    turns = []
    for m in messages:
        m = _maybe_json(m)
        role = str(m.get("role") or default_role) if isinstance(m, dict) else default_role
        turns.append({"role": role, "content": _text(m)})
    return turns


def _system(instructions: Any) -> list[dict[str, str]]:
    if instructions is None:
        return []
    return [{"role": "system", "content": _text(_maybe_json(instructions))}]


def _semconv_messages(attrs: dict[str, Any]) -> tuple[list[dict[str, str]] | None, Any]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` (1.37+) from one attribute set."""
    if "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs:
        return None, None
    inp = _system(attrs.get("gen_ai.system_instructions")) + _turns(
        attrs.get("gen_ai.input.messages"))
    out = _maybe_json(attrs.get("gen_ai.output.messages"))
    first = out[0] if isinstance(out, list) and out else out
    return inp or None, first


def _event_messages(events: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any] | None, Any]:
    """The event forms: 1.26-1.27 prompt/completion events, 1.28-1.36 per-message events."""
    turns: list[dict[str, str]] = []
    output: Any = None
    for name, attrs in events:
        body = _maybe_json(attrs.get("gen_ai.event.content"))
        if name == "gen_ai.content.prompt" and "gen_ai.prompt" in attrs:
            turns += _turns(attrs["gen_ai.prompt"])
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in attrs:
            done = _turns(attrs["gen_ai.completion"], "assistant")
            output = done[0]["content"] if done and output is None else output
        elif name.startswith("gen_ai.") and name.endswith(".message"):
            role = name[len("gen_ai."):-len(".message")]
            source = body if body is not None else attrs
            turns += [{"role": str(attrs.get("role") or role), "content": _text(source)}]
        elif name == "gen_ai.choice" and output is None:
            source = body if body is not None else attrs.get("message", attrs)
            output = _text(source)
    return (turns or None), output


def _flat_messages(attrs: dict[str, Any], prefix: str) -> list[dict[str, str]]:
    """OpenLLMetry's ``gen_ai.prompt.0.role`` / ``gen_ai.prompt.0.content`` attributes."""
    turns: dict[int, dict[str, str]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, leaf = key[len(prefix):].partition(".")
        if index.isdigit() and leaf in ("role", "content"):
            turns.setdefault(int(index), {"role": "user", "content": ""})[leaf] = str(value)
    return [turns[i] for i in sorted(turns)]


def extract_content(span: SpanView) -> tuple[Any, Any]:
    """(input, output) of a span, each ``None`` when the span does not carry it."""
    attrs = span.attributes
    inp, out = _semconv_messages(attrs)
    if inp is None and out is None:
        for name, ev_attrs in span.events:
            if name == "gen_ai.client.inference.operation.details":
                inp, out = _semconv_messages(ev_attrs)
                break
    if inp is None and out is None:
        inp, out = _event_messages(span.events)
    if inp is None and out is None:
        flat_in = _flat_messages(attrs, "gen_ai.prompt.")
        flat_out = _flat_messages(attrs, "gen_ai.completion.")
        inp, out = flat_in or None, (flat_out[0]["content"] if flat_out else None)
    if isinstance(attrs.get(PREFIX + "input"), str):
        inp = attrs[PREFIX + "input"]
    if isinstance(attrs.get(PREFIX + "output"), str):
        out = attrs[PREFIX + "output"]
    return inp, (None if out is None else _text(out))


# -- spans to samples ---------------------------------------------------------------------


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _cost(attrs: dict[str, Any], prices: Sequence[ModelPrice]) -> tuple[Any, dict[str, Any]]:
    """(cost_usd or None, usage extras) from an explicit cost or tokens times the price."""
    inp = _int_or_none(attrs.get("gen_ai.usage.input_tokens",
                                 attrs.get("gen_ai.usage.prompt_tokens")))
    out = _int_or_none(attrs.get("gen_ai.usage.output_tokens",
                                 attrs.get("gen_ai.usage.completion_tokens")))
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    extras = {k: v for k, v in (("model", model), ("input_tokens", inp),
                                ("output_tokens", out)) if v is not None}
    if PREFIX + "cost_usd" in attrs:
        return attrs[PREFIX + "cost_usd"], extras
    by_name = {p.model: p for p in prices}
    price = next((by_name[m] for m in (attrs.get("gen_ai.response.model"),
                                       attrs.get("gen_ai.request.model")) if m in by_name), None)
    if price is None or inp is None or out is None:
        return None, extras
    return price.cost_usd(inp, out), extras


_FIELDS = ("cohort", "revision", "queue", "risk", "task", "fallback", "decision", "label",
           "policy_violation")


def _selected(span: SpanView, ignored: Counter[str]) -> dict[str, Any] | None:
    """The merged attributes of a span that is a sample, else None (counted)."""
    attrs = {**span.resource, **span.attributes}
    if not isinstance(attrs.get(RULE_ATTR), str) or not attrs[RULE_ATTR]:
        ignored["no_rule"] += 1
        return None
    if attrs.get(PREFIX + "sample") is False:
        ignored["opted_out"] += 1
        return None
    explicit = RULE_ATTR in span.attributes
    if not explicit and span.attributes.get("gen_ai.operation.name") not in ANSWERING_OPERATIONS:
        ignored["not_an_answer"] += 1
        return None
    return attrs


def span_record(span: SpanView, attrs: dict[str, Any],
                prices: Sequence[ModelPrice]) -> tuple[dict[str, Any] | None, Problem | None]:
    """The sample record of a selected span, or the problem that stops it."""
    if span.end_ns < span.start_ns or span.start_ns <= 0:
        return None, Problem(RejectKind.INVALID_SPAN, "latency_ms",
                             "the span's end time is before its start (or unset)")
    inp, out = extract_content(span)
    if inp is None:
        return None, Problem(RejectKind.INVALID_SPAN, "input", NO_CONTENT)
    if out is None and span.status_code != STATUS_ERROR:
        return None, Problem(RejectKind.INVALID_SPAN, "output", NO_CONTENT)
    cost, usage = _cost(attrs, prices)
    record: dict[str, Any] = {
        "id": attrs.get(PREFIX + "id") or f"{span.trace_id}-{span.span_id}",
        "rule": attrs[RULE_ATTR],
        "namespace": attrs.get(PREFIX + "namespace") or attrs.get("k8s.namespace.name"),
        "cohort": "baseline",
        "ts": datetime.fromtimestamp(span.end_ns / 1e9, UTC).isoformat(),
        "input": inp, "output": out or "",
        "latency_ms": (span.end_ns - span.start_ns) / 1e6,
        "cost_usd": cost, "fallback": False,
        **usage, "trace_id": span.trace_id, "span_id": span.span_id,
    }
    record.update({f: attrs[PREFIX + f] for f in _FIELDS if attrs.get(PREFIX + f) is not None})
    if span.status_code == STATUS_ERROR:
        record["span_error"] = str(attrs.get("error.type") or "error")
    return record, None


def parse_otlp_traces(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None = None,
    *,
    pricing: Pricing = lambda rule, namespace: (),
    check: Callable[[Sample], Problem | None] | None = None,
    max_messages: int = 50,
) -> OtlpResult:
    """Samples from an OTLP/HTTP trace export. Raises :class:`OtlpError` only for a
    payload that is unusable as a whole; a bad span is a reject, never an exception."""
    spans = decode_spans(body, content_type, content_encoding)
    report = LoadReport(source="traces", max_messages=max_messages)
    result = OtlpResult(samples=[], report=report, spans=len(spans))
    for number, span in enumerate(spans, start=1):
        attrs = _selected(span, result.ignored)
        if attrs is None:
            continue
        where = f"span {number} ({span.trace_id}/{span.span_id})"
        record, problem = span_record(span, attrs, pricing(attrs[RULE_ATTR],
                                                           attrs.get(PREFIX + "namespace")))
        rid = attrs.get(PREFIX + "id") or f"{span.trace_id}-{span.span_id}"
        if problem is None:
            try:
                sample = Sample.model_validate(record)
            except ValidationError as exc:
                path, reason = (field_errors(exc) or [("", "invalid")])[0]
                report.reject(RejectKind.INVALID_SPAN, number,
                              f"{where}: {format_field_errors(exc)}",
                              field=path or None, reason=reason, record_id=str(rid))
                continue
            problem = check(sample) if check is not None else None
        if problem is not None:
            report.reject(problem.kind, number, f"{where}: field {problem.field!r}: "
                          f"{problem.reason}", field=problem.field, reason=problem.reason,
                          record_id=str(rid))
            continue
        result.samples.append(sample)
        report.record_lines.append(number)
    report.accepted = len(result.samples)
    return result


# -- answers ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def otlp_answer(result: OtlpResult | None, content_type: str | None,
                error: OtlpError | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) in the request's encoding, as OTLP/HTTP specifies:
    200 with ``partialSuccess`` counting rejected spans, or the error status with a
    ``google.rpc.Status`` (code 3, INVALID_ARGUMENT) naming the reason."""
    proto = (content_type or "").split(";", 1)[0].strip().lower() == PROTOBUF
    if error is not None or result is None:
        reason = error.reason if error else "unusable payload"
        status = error.status if error else 400
        if proto:
            text = reason.encode()
            return status, b"\x08\x03\x12" + _varint(len(text)) + text, PROTOBUF
        return status, json.dumps({"code": 3, "message": reason}).encode(), JSON_TYPE
    rejected = result.report.total_rejected
    message = "; ".join(r.message for r in result.report.rejects[:5])
    if proto:
        partial = ExportTracePartialSuccess(rejected_spans=rejected, error_message=message) \
            if rejected else None
        body = ExportTraceServiceResponse(partial_success=partial).SerializeToString()
        return 200, body, PROTOBUF
    answer: dict[str, Any] = {}
    if rejected:
        answer["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
    return 200, json.dumps(answer).encode(), JSON_TYPE


__all__ = [
    "ANSWERING_OPERATIONS",
    "OtlpError",
    "OtlpResult",
    "SpanView",
    "decode_spans",
    "extract_content",
    "otlp_answer",
    "parse_otlp_traces",
]
