"""Where evidence comes from: sample files, the durable sample store, and Prometheus."""

from .prometheus import (
    ALL_QUEUES,
    CountsResult,
    ErrorKind,
    PromError,
    PrometheusSource,
    SliceCounts,
    Status,
    TemplateError,
    Value,
    promql_duration,
    render,
)
from .samples_io import LoadReport, load_feedback, load_samples, parse_feedback, parse_samples
from .store import (
    ChangeBatch,
    FeedbackResult,
    InsertResult,
    PruneResult,
    SampleChange,
    SampleStore,
    StoredSample,
    Verdict,
)

__all__ = [
    "ALL_QUEUES",
    "ChangeBatch",
    "CountsResult",
    "ErrorKind",
    "FeedbackResult",
    "InsertResult",
    "LoadReport",
    "PromError",
    "PrometheusSource",
    "PruneResult",
    "SampleChange",
    "SampleStore",
    "SliceCounts",
    "Status",
    "StoredSample",
    "TemplateError",
    "Value",
    "Verdict",
    "load_feedback",
    "load_samples",
    "parse_feedback",
    "parse_samples",
    "promql_duration",
    "render",
]
