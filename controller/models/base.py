"""Shared pydantic bases and small value types used across the models."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema
from pydantic.alias_generators import to_camel

JSON = dict[str, Any]
"""A Kubernetes object or any JSON object, as decoded (the actuator speaks dicts)."""

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``1m`` or ``1h30m`` (kubectl style)."""
    text = text.strip()
    if not text or not _DURATION_RE.match(text):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 1m, 1h30m"
        )
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total


MAX_DURATION_SECONDS = 365 * 86400.0
"""No duration in a rule may exceed a year (a typo such as ``99999999h`` is named)."""


def _check_duration(text: str) -> str:
    seconds = parse_duration(text)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {text!r} is longer than 365d")
    return text


def _at_least(minimum: float, label: str) -> AfterValidator:
    def check(text: str) -> str:
        if parse_duration(text) < minimum:
            raise ValueError(f"duration {text!r} is shorter than {label}")
        return text

    return AfterValidator(check)


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A Go-style duration string (at most 365d), validated; convert with :func:`parse_duration`."""

IntervalDuration = Annotated[Duration, _at_least(1.0, "1s")]
"""An analysis interval: at least one second (each look reads the store and the cluster)."""


class FieldError(ValueError):
    """A cross-field validation error that knows which field (relative path) it is about.

    Pydantic keeps the original exception in the error's context, so the manifest
    loader can join the model's location with ``path`` and name the exact field.
    """

    def __init__(self, path: str, reason: str, *, also: Sequence[FieldError] = ()) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason
        self.also = tuple(also)
        """Further independent errors of the same model, reported with this one."""

    def issues(self) -> list[FieldError]:
        """This error and every one it carries (see :class:`FieldChecks`)."""
        return [self, *(e for more in self.also for e in more.issues())]


class FieldChecks:
    """Runs a model's independent cross-field checks and raises every failure at once.

    Pydantic stops a model validator at its first exception, so a rule with three
    mistakes used to show one, then the next after each fix. Each check here is a
    callable that raises :class:`FieldError`; all of them run, and the errors come out
    together (one pydantic error whose :meth:`FieldError.issues` the formatter expands).
    """

    def __init__(self) -> None:
        self.found: list[FieldError] = []

    def run(self, check: Callable[..., object], *args: object) -> None:
        try:
            check(*args)
        except FieldError as exc:
            self.found.extend(exc.issues())

    def raise_any(self) -> None:
        if self.found:
            first, *rest = self.found
            raise FieldError(first.path, first.reason, also=rest)


class KubeModel(BaseModel):
    """Base for everything that lives in a Kubernetes object: camelCase on the wire,
    snake_case in Python, and unknown fields rejected so a typo is named, not ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        allow_inf_nan=False,  # YAML's .inf / .nan are refused, naming the field
    )


class OpenModel(BaseModel):
    """Base for camelCase objects the controller writes itself (status, evidence)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
