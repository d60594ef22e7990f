"""OpenTelemetry spans to samples, with the bytes the real OTLP/HTTP exporter sends.

The official ``opentelemetry-sdk`` with ``OTLPSpanExporter`` (protobuf over HTTP) exports
GenAI spans to a small aiohttp receiver that answers with the parser; the captured bytes
are parsed again as OTLP/JSON (converted as the OTLP spec encodes JSON: hex ids,
camelCase keys, 64-bit integers as strings) and must give the same samples.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from google.protobuf.json_format import MessageToDict
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from controller.models.ingest import RejectKind
from controller.models.rule import ModelPrice
from controller.sources.otlp import (
    NO_CONTENT,
    OtlpError,
    otlp_answer,
    parse_otlp_traces,
)
from controller.sources.samples_io import unknown_rule
from tests.support.aio import serve_in_thread

PRICES = [ModelPrice(model="gpt-4.1-mini", input_usd_per_million_tokens=0.4,
                     output_usd_per_million_tokens=1.6)]
T0 = 1_790_000_000_000_000_000  # ns


def pricing(rule: str, namespace: str | None) -> list[ModelPrice]:
    return PRICES if rule == "support-assistant" else []


def _msgs(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"role": r, "parts": [{"type": "text", "content": c}]} for r, c in pairs])


def emit(endpoint: str) -> None:
    """Spans in every content form, from two services (one names the rule on its resource)."""
    tagged = TracerProvider(resource=Resource.create({
        "service.name": "assistant", "k8s.namespace.name": "team-a",
        "llm_canary.rule": "support-assistant", "llm_canary.cohort": "canary",
        "llm_canary.revision": "5d41402abc4b"}))
    plain = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    for provider in (tagged, plain):
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    t = tagged.get_tracer("test")
    common = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1-mini"}
    # semconv 1.37+: messages as (JSON string) attributes, usage, queue and fallback
    span = t.start_span("chat gpt-4.1-mini", start_time=T0, attributes={
        **common, "gen_ai.response.model": "gpt-4.1-mini",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": _msgs(("user", "Where is my refund?")),
        "gen_ai.output.messages": _msgs(("assistant", "It was sent on Monday.")),
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500,
        "llm_canary.queue": "billing", "llm_canary.fallback": True,
        "llm_canary.id": "req-1"})
    span.end(end_time=T0 + 1_250_000_000)
    # semconv 1.26-1.27: prompt and completion events
    span = t.start_span("chat", start_time=T0, attributes=common)
    span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(
        [{"role": "user", "content": "Cancel my order"}])})
    span.add_event("gen_ai.content.completion", {"gen_ai.completion": json.dumps(
        [{"role": "assistant", "content": "Order cancelled."}])})
    span.end(end_time=T0 + 800_000_000)
    # semconv 1.28-1.36: one event per message and a choice event; no price for the model
    span = t.start_span("chat", start_time=T0, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "unpriced-model",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5})
    span.add_event("gen_ai.system.message", {"content": "You help with invoices."})
    span.add_event("gen_ai.user.message", {"content": "Send my invoice"})
    span.add_event("gen_ai.choice", {"gen_ai.event.content": json.dumps(
        {"index": 0, "finish_reason": "stop", "message": {"content": "Invoice sent."}})})
    span.end(end_time=T0 + 300_000_000)
    # OpenLLMetry's flat attributes, with the rule on the span itself
    span = t.start_span("openai.chat", start_time=T0, attributes={
        "llm_canary.rule": "support-assistant", "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "Hi", "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Hello!", "llm_canary.cost_usd": 0.002})
    span.end(end_time=T0 + 100_000_000)
    # not samples: an embeddings step, an opted-out call, a service without the rule
    t.start_span("embeddings", start_time=T0, attributes={
        "gen_ai.operation.name": "embeddings"}).end(end_time=T0 + 1)
    t.start_span("chat", start_time=T0, attributes={
        **common, "llm_canary.sample": False}).end(end_time=T0 + 1)
    plain.get_tracer("test").start_span("GET /health", start_time=T0).end(end_time=T0 + 1)
    # rejected: a chat span whose content was not captured; an errored call without output
    t.start_span("chat", start_time=T0, attributes=common).end(end_time=T0 + 5)
    span = t.start_span("chat", start_time=T0, attributes={
        **common, "gen_ai.input.messages": _msgs(("user", "Help")), "error.type": "timeout"})
    span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=T0 + 30_000_000_000)
    for provider in (tagged, plain):
        provider.shutdown()


@pytest.fixture(scope="module")
def captured() -> Iterator[list[tuple[bytes, str, dict[str, Any]]]]:
    bodies: list[tuple[bytes, str, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        ctype = request.headers.get("Content-Type", "")
        try:
            result = parse_otlp_traces(body, ctype, request.headers.get("Content-Encoding"),
                                       pricing=pricing)
            status, payload, answer_type = otlp_answer(result, ctype)
        except OtlpError as exc:
            status, payload, answer_type = otlp_answer(None, ctype, exc)
        bodies.append((body, request.headers.get("Content-Encoding", ""),
                       {"status": status, "payload": payload}))
        return web.Response(status=status, body=payload, content_type=answer_type)

    app = web.Application()
    app.router.add_post("/v1/traces", receive)
    with serve_in_thread(app) as url:
        emit(url + "/v1/traces")
    yield bodies


def _raw(captured: list[tuple[bytes, str, dict[str, Any]]]) -> list[bytes]:
    return [gzip.decompress(b) if enc == "gzip" else b for b, enc, _ in captured]


def _merged(captured: list[tuple[bytes, str, dict[str, Any]]]) -> bytes:
    """Every exported batch as one request (the exporter sends one per span here)."""
    merged = ExportTraceServiceRequest()
    for raw in _raw(captured):
        part = ExportTraceServiceRequest()
        part.ParseFromString(raw)
        merged.resource_spans.extend(part.resource_spans)
    return merged.SerializeToString()


def as_otlp_json(body: bytes) -> bytes:
    """The OTLP/JSON encoding of a protobuf request: ids are hex, not base64."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    doc = MessageToDict(request)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in node:
                    node[key] = base64.b64decode(node[key]).hex()
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(doc)
    return json.dumps(doc).encode()


def test_the_exporter_got_otlp_answers(captured: list[tuple[bytes, str, dict[str, Any]]]) \
        -> None:
    assert captured and all(meta["status"] == 200 for _, _, meta in captured)
    partial = []
    for _, _, meta in captured:
        answer = ExportTraceServiceResponse()
        answer.ParseFromString(meta["payload"])
        partial.append(answer.partial_success.rejected_spans)
    assert sum(partial) == 1  # the chat span without captured content


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_genai_spans_become_samples(captured: list[tuple[bytes, str, dict[str, Any]]],
                                    encoding: str) -> None:
    body = _merged(captured)
    if encoding == "json":
        body, ctype = as_otlp_json(body), "application/json"
    else:
        ctype = "application/x-protobuf"
    result = parse_otlp_traces(body, ctype, pricing=pricing)
    assert result.spans == 9
    assert result.ignored == {"not_an_answer": 1, "opted_out": 1, "no_rule": 1}
    by_input = {str(s.input): s for s in result.samples}
    assert len(result.samples) == 5, [r.message for r in result.report.rejects]

    first = next(s for s in result.samples if s.id == "req-1")
    assert (first.rule, first.namespace, first.cohort, first.revision) == (
        "support-assistant", "team-a", "canary", "5d41402abc4b")
    assert (first.queue, first.fallback, first.latency_ms) == ("billing", True, 1250.0)
    assert first.cost_usd == pytest.approx((1000 * 0.4 + 500 * 1.6) / 1e6)
    assert [(t.role, t.content) for t in first.input] == [  # type: ignore[union-attr]
        ("system", "Be brief."), ("user", "Where is my refund?")]
    assert first.output == "It was sent on Monday."
    assert first.extras()["model"] == "gpt-4.1-mini"
    assert first.ts.timestamp() == pytest.approx((T0 + 1_250_000_000) / 1e9)

    legacy = next(s for k, s in by_input.items() if "Cancel my order" in k)
    assert legacy.output == "Order cancelled." and legacy.latency_ms == 800.0
    events = next(s for k, s in by_input.items() if "Send my invoice" in k)
    assert events.output == "Invoice sent." and events.cost_usd is None  # no price: unknown
    assert [t.role for t in events.input] == ["system", "user"]  # type: ignore[union-attr]
    flat = next(s for k, s in by_input.items() if "'Hi'" in k)
    assert flat.output == "Hello!" and flat.cost_usd == 0.002
    failed = next(s for s in result.samples if s.extras().get("span_error"))
    assert failed.output == "" and failed.extras()["span_error"] == "timeout"
    assert len({s.id for s in result.samples}) == 5

    (reject,) = result.report.rejects
    assert (reject.kind, reject.field, reject.reason) == (
        RejectKind.INVALID_SPAN, "input", NO_CONTENT)


def test_unknown_rules_are_refused_by_the_check(
    captured: list[tuple[bytes, str, dict[str, Any]]]
) -> None:
    result = parse_otlp_traces(_merged(captured), "application/x-protobuf",
                               check=unknown_rule(lambda rule, ns: False))
    assert result.samples == []
    assert {r.kind for r in result.report.rejects} == {RejectKind.UNKNOWN_RULE,
                                                       RejectKind.INVALID_SPAN}


@pytest.mark.parametrize(
    ("body", "ctype", "encoding", "status", "fragment"),
    [
        (b"\xff\xff\xff", "application/x-protobuf", None, 400, "protobuf"),
        (b"{not json", "application/json", None, 400, "not valid JSON"),
        (b'{"resourceSpans": {}}', "application/json", None, 400, "resourceSpans: expected"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
         "application/json", None, 400, "startTimeUnixNano"),
        (b"{}", "text/plain", None, 415, "Content-Type"),
        (b"{}", "application/json", "br", 415, "Content-Encoding"),
        (b"not gzip", "application/json", "gzip", 400, "gzip"),
        (gzip.compress(b" " * (33 * 1024 * 1024)), "application/json", "gzip", 413, "inflates"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(
    body: bytes, ctype: str, encoding: str | None, status: int, fragment: str
) -> None:
    with pytest.raises(OtlpError) as caught:
        parse_otlp_traces(body, ctype, encoding)
    assert caught.value.status == status and fragment in caught.value.reason
    code, payload, answer_type = otlp_answer(None, ctype, caught.value)
    assert code == status
    if answer_type == "application/x-protobuf":
        rpc = status_pb2.Status()
        rpc.ParseFromString(payload)
        assert rpc.code == 3 and fragment in rpc.message
    else:
        assert fragment in json.loads(payload)["message"]


def test_an_empty_export_is_fine() -> None:
    result = parse_otlp_traces(b"", "application/x-protobuf")
    assert (result.spans, result.samples) == (0, [])
    assert otlp_answer(result, "application/json")[:2] == (200, b"{}")


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["application/x-protobuf", "application/json"]))
def test_arbitrary_bytes_never_raise_anything_but_otlp_error(body: bytes, ctype: str) -> None:
    try:
        result = parse_otlp_traces(body, ctype)
    except OtlpError as exc:
        assert exc.status == 400 and exc.reason
    else:
        assert len(result.samples) <= result.spans
