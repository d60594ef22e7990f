"""Cohort counts from Prometheus through ``prometheus-api-client``.

A guard that reads Prometheus needs, per cohort (and per queue), a count of harmful
events and optionally a count of requests. This module renders the rule's PromQL
templates, runs instant queries with a timeout, and returns typed results. It never
raises into the caller and never turns missing data into zeros: a failed query is an
:class:`PromError` (unreachable, timeout, bad query, server, bad response), an empty
result is "no data". The caller maps an error to the guard outcome ERROR and no data to
NO_DATA (docs/design.md, Failure semantics: neither ever promotes).

Template placeholders (``string.Template``): ``${cohort}``, ``${queue}``,
``${namespace}``, ``${rule}``, ``${interval}``. For a query over all queues ``${queue}``
renders as ``.*``, so write ``queue=~"${queue}"`` to use one template for both the
global and the per-queue query. ``${interval}`` renders as a PromQL duration (``60s``).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from controller.models import Cohort, PromQuery, parse_duration

from .counts import CountsResult, ErrorKind, PromError, SliceCounts, Status, Value

ALL_QUEUES = ".*"
"""What ``${queue}`` renders as when a query covers every queue."""

PLACEHOLDERS = frozenset({"cohort", "queue", "namespace", "rule", "interval"})

# Values substituted inside PromQL string literals: nothing that could end the literal
# or change the query. Kubernetes names, queue names and cohorts all fit.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/\-]+$")


class TemplateError(ValueError):
    """A PromQL template that cannot be rendered (unknown placeholder, bad ``$``)."""


def promql_duration(value: str | float) -> str:
    """A PromQL range duration: ``"1m"`` -> ``"60s"``, ``1.5`` -> ``"1500ms"``."""
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if seconds <= 0 or not math.isfinite(seconds):
        raise ValueError(f"interval must be positive, got {value!r}")
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{max(ms, 1)}ms"


def render(template: str, values: dict[str, str]) -> str:
    """Substitute placeholders; every placeholder used must be known and given."""
    tpl = string.Template(template)
    unknown = sorted(set(tpl.get_identifiers()) - PLACEHOLDERS)
    if unknown:
        raise TemplateError(
            f"unknown placeholder(s) {', '.join('${' + u + '}' for u in unknown)}; "
            f"known: {', '.join('${' + p + '}' for p in sorted(PLACEHOLDERS))}"
        )
    if not tpl.is_valid():
        raise TemplateError("invalid '$' in template (write '$$' for a literal dollar)")
    try:
        return tpl.substitute(values)
    except KeyError as exc:
        raise TemplateError(f"placeholder ${{{exc.args[0]}}} has no value here") from exc
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc


def _check_value(name: str, value: str) -> None:
    if name == "queue" and value == ALL_QUEUES:
        return
    if not _SAFE_VALUE.match(value):
        raise TemplateError(
            f"{name} {value!r} cannot be put into a PromQL label matcher "
            "(allowed: letters, digits, _ . : / -)"
        )


def _error_from_response(exc: PrometheusApiClientException, query: str) -> PromError:
    """Map the client's non-200 exception (``HTTP Status Code 400 (b'...')``) to a kind."""
    text = str(exc)
    match = re.search(r"HTTP Status Code (\d+)", text)
    code = int(match.group(1)) if match else 0
    detail = re.search(r'"error":"((?:[^"\\]|\\.)*)"', text)
    message = detail.group(1) if detail else text[:300]
    if 'errorType":"timeout' in text or code == 504:
        return PromError(ErrorKind.TIMEOUT, message, query)
    if code in (400, 422):
        return PromError(ErrorKind.BAD_QUERY, message, query)
    if code in (401, 403, 404):
        return PromError(ErrorKind.UNREACHABLE, f"HTTP {code}: {message}", query)
    return PromError(ErrorKind.SERVER, f"HTTP {code}: {message}", query)


def _parse_result(data: Any, query: str) -> Value | PromError:
    """Sum an instant vector or read a scalar; NaN-only means no data."""
    samples: list[Any]
    if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
        samples = [data]  # scalar: [timestamp, "value"]
    elif isinstance(data, list):
        samples = []
        for series in data:
            if not isinstance(series, dict) or "value" not in series:
                return PromError(
                    ErrorKind.BAD_RESPONSE,
                    "expected an instant vector (a range vector needs an aggregation "
                    "such as increase() or sum_over_time())",
                    query,
                )
            samples.append(series["value"])
    else:
        return PromError(ErrorKind.BAD_RESPONSE, f"unexpected result {str(data)[:200]}", query)
    values: list[float] = []
    for sample in samples:
        try:
            number = float(sample[1])
        except (TypeError, ValueError, IndexError):
            return PromError(ErrorKind.BAD_RESPONSE, f"not a number: {sample!r}"[:200], query)
        if math.isnan(number):
            continue
        if math.isinf(number) or number < 0:
            return PromError(
                ErrorKind.BAD_RESPONSE, f"a count must be finite and >= 0, got {number}", query
            )
        values.append(number)
    if not values:
        return Value(None, len(samples))
    return Value(math.fsum(values), len(samples))


class PrometheusSource:
    """Runs a rule's PromQL templates per cohort and queue; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 10.0,
        retries: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        # The client's default retries (3, with backoff) on a refused connection would
        # make "Prometheus is down" take seconds; the analysis interval is the retry.
        retry = Retry(total=retries, backoff_factor=0.2, status_forcelist=(), raise_on_status=False)
        self._client = PrometheusConnect(
            url=self.url, headers=headers, retry=retry, timeout=timeout_seconds
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def instant(self, promql: str, *, at: datetime | None = None) -> Value | PromError:
        """Run one instant query; never raises."""
        params: dict[str, str] = {"timeout": promql_duration(max(self.timeout_seconds, 0.001))}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            data = self._client.custom_query(promql, params=params)
        except requests.exceptions.ConnectTimeout as exc:
            return PromError(ErrorKind.UNREACHABLE, f"connect timeout: {exc}"[:300], promql)
        except requests.exceptions.Timeout:
            return PromError(
                ErrorKind.TIMEOUT, f"no answer within {self.timeout_seconds:g}s", promql
            )
        except requests.exceptions.ConnectionError as exc:
            return PromError(ErrorKind.UNREACHABLE, _short(exc), promql)
        except PrometheusApiClientException as exc:
            return _error_from_response(exc, promql)
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError) as exc:
            return PromError(ErrorKind.BAD_RESPONSE, _short(exc), promql)
        return _parse_result(data, promql)

    def counts(
        self,
        query: PromQuery,
        *,
        rule: str,
        namespace: str,
        interval: str | float,
        queues: Sequence[str] | None = None,
        cohorts: Sequence[Cohort] = (Cohort.BASELINE, Cohort.CANARY),
        at: datetime | None = None,
    ) -> CountsResult:
        """Events (and totals) per cohort, and per queue when ``queues`` is given.

        Stops at the first error: one failed query makes the whole comparison
        unusable, and an unreachable server would only fail again.
        """
        rendered: list[str] = []
        slices: list[SliceCounts] = []
        try:
            base = {"namespace": namespace, "rule": rule, "interval": promql_duration(interval)}
        except ValueError as exc:
            error = PromError(ErrorKind.BAD_QUERY, f"interval: {exc}")
            return CountsResult(query.name, Status.ERROR, error=error)
        for cohort in cohorts:
            for queue in [None] if queues is None else list(queues):
                values = {**base, "cohort": cohort.value, "queue": queue or ALL_QUEUES}
                found: dict[str, float | None] = {}
                for part, template in (("events", query.events), ("total", query.total)):
                    if template is None:
                        found[part] = None
                        continue
                    try:
                        for name in ("namespace", "rule", "cohort", "queue"):
                            _check_value(name, values[name])
                        promql = render(template, values)
                    except TemplateError as exc:
                        error = PromError(ErrorKind.BAD_QUERY, f"{part} template: {exc}")
                        return CountsResult(
                            query.name, Status.ERROR, tuple(slices), error, tuple(rendered)
                        )
                    rendered.append(promql)
                    answer = self.instant(promql, at=at)
                    if isinstance(answer, PromError):
                        return CountsResult(
                            query.name, Status.ERROR, tuple(slices), answer, tuple(rendered)
                        )
                    found[part] = answer.value
                slices.append(
                    SliceCounts(
                        cohort=cohort,
                        queue=queue,
                        events=found["events"],
                        total=found["total"],
                        needs_total=query.total is not None,
                    )
                )
        with_data = sum(s.has_data for s in slices)
        if with_data == len(slices):
            status = Status.OK
        elif with_data == 0:
            status = Status.NO_DATA
        else:
            status = Status.PARTIAL
        return CountsResult(query.name, status, tuple(slices), None, tuple(rendered))


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the retry wrapping."""
    text = str(exc)
    match = re.search(r"\] ([^'\"]+)'?\)*$", text) or re.search(r"Caused by (.*)$", text)
    return (match.group(1) if match else text)[:300]


__all__ = [
    "ALL_QUEUES",
    "CountsResult",
    "ErrorKind",
    "PromError",
    "PrometheusSource",
    "SliceCounts",
    "Status",
    "TemplateError",
    "Value",
    "promql_duration",
    "render",
]
