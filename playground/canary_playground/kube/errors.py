"""Errors answered as Kubernetes ``Status`` objects, worded as kube-apiserver words them.

Clients (and tests) match on ``reason``, ``code``, ``details.causes[].field`` and the
message text, so these follow the real server's formats: ``deployments.apps "x" not found``,
``Deployment.apps "x" is invalid: <field>: <detail>`` (several causes in ``[...]``), and
``<resource> "x" is forbidden: User "u" cannot <verb> resource ...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Gone",
           415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
           500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, *, details: JSON | None = None,
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})
        if causes:
            self.details["causes"] = causes

    def status(self) -> JSON:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Success" if code < 400 else "Failure", "message": message,
                  "reason": reason, "code": code}
    if not message:
        body.pop("message")
    if not reason:
        body.pop("reason")
    if details:
        body["details"] = details
    return body


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an API timestamp (``Z`` or an offset, optional fraction)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def qualified(plural: str, group: str) -> str:
    """``deployments.apps``; core resources have no group suffix."""
    return f"{plural}.{group}" if group else plural


def _details(plural: str, group: str, name: str) -> JSON:
    out: JSON = {"group": group, "kind": plural}
    if name:
        out["name"] = name
    return out


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(plural, group)} "{name}" not found',
                    details=_details(plural, group, name))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(plural, group)} "{name}" already exists',
                    details=_details(plural, group, name))


def conflict(plural: str, group: str, name: str, detail: str = "") -> ApiError:
    detail = detail or ("the object has been modified; please apply your changes to the "
                        "latest version and try again")
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                    f'{qualified(plural, group)} "{name}": {detail}',
                    details=_details(plural, group, name))


def forbidden(plural: str, group: str, name: str, why: str) -> ApiError:
    what = qualified(plural, group)
    head = f'{what} "{name}"' if name else what
    return ApiError(403, "Forbidden", f"{head} is forbidden: {why}",
                    details=_details(plural, group, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def route_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    details={"causes": [{"reason": "UnexpectedServerResponse",
                                         "message": "404 page not found"}]})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource "
                    f"({method})")


# --------------------------------------------------------------------------- field errors


def show(value: Any) -> str:
    """A value as the API server prints it in a field error (close to Go's ``%#v``)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: a path, a cause reason and the message after the path."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def cause(self) -> JSON:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def invalid_value(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(field, "FieldValueInvalid", f"Invalid value: {show(value)}: {detail}")


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, "FieldValueRequired",
                      "Required value" + (f": {detail}" if detail else ""))


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError(field, "FieldValueForbidden", f"Forbidden: {detail}")


def not_supported(field: str, value: Any, valid: list[str]) -> FieldError:
    choices = ", ".join(json.dumps(v) for v in valid)
    return FieldError(field, "FieldValueNotSupported",
                      f"Unsupported value: {show(value)}: supported values: {choices}")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(field, "FieldValueDuplicate", f"Duplicate value: {show(value)}")


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid: ``Kind.group "name" is invalid: <errors>`` with one cause per error."""
    text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    head = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{head} "{name}" is invalid: {text}',
                    details={"name": name, "group": group, "kind": kind},
                    causes=[e.cause() for e in errors])
