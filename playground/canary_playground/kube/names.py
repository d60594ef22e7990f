"""Name, label and annotation syntax, with kube-apiserver's error messages.

Object names: DNS-1123 subdomains for most kinds, DNS-1123 labels for namespaces,
DNS-1035 labels for Services, path segments for RBAC objects. Labels: qualified keys
(optional DNS subdomain prefix + ``/`` + 63-character name) and values of at most 63
characters; every error names the field ``metadata.labels`` as the real server does.
"""

from __future__ import annotations

import re

from .errors import FieldError, invalid_value

SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1035_FMT = r"[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_FMT = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
CONFIG_KEY_FMT = r"[-._a-zA-Z0-9]+"


def regex_error(message: str, fmt: str, *examples: str) -> str:
    shown = ",  or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{fmt}')"


def _full(fmt: str, value: str) -> bool:
    return re.fullmatch(fmt, value) is not None


def _syntax(value: str, limit: int, fmt: str, message: str, *examples: str) -> list[str]:
    errs = []
    if len(value) > limit:
        errs.append(f"must be no more than {limit} characters")
    if not _full(fmt, value):
        errs.append(regex_error(message, fmt, *examples))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    return _syntax(value, 253, SUBDOMAIN_FMT,
                   "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character", "example.com")


def dns1123_label(value: str) -> list[str]:
    return _syntax(value, 63, LABEL_FMT,
                   "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                   "characters or '-', and must start and end with an alphanumeric character",
                   "my-name", "123-abc")


def dns1035_label(value: str) -> list[str]:
    return _syntax(value, 63, DNS1035_FMT,
                   "a DNS-1035 label must consist of lower case alphanumeric characters or "
                   "'-', start with an alphabetic character, and end with an alphanumeric "
                   "character", "my-name", "abc-123")


def path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


NAME_RULES = {"subdomain": dns1123_subdomain, "label": dns1123_label,
              "dns1035": dns1035_label, "path": path_segment}


def name_errors(rule: str, name: str, field: str = "metadata.name") -> list[FieldError]:
    return [invalid_value(field, name, m) for m in NAME_RULES[rule](name)]


def qualified_name(value: str) -> list[str]:
    """``IsQualifiedName``: label keys, annotation keys."""
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
    else:
        return [regex_error(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character", QUALIFIED_FMT,
            "MyName", "my.name", "123-abc") + " with an optional DNS subdomain prefix and "
            "'/' (e.g. 'example.com/MyName')"]
    errs = [f"prefix part {m}" for m in (dns1123_subdomain(prefix) if prefix else [])]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not _full(QUALIFIED_FMT, name):
        errs.append("name part " + regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character", QUALIFIED_FMT, "MyName", "my.name",
            "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    return _syntax(value, 63, LABEL_VALUE_FMT,
                   "a valid label must be an empty string or consist of alphanumeric "
                   "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                   "character", "MyValue", "my_value", "12345")


def label_errors(labels: object, field: str) -> list[FieldError]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid_value(field, labels, "must be a map of strings")]
    errs: list[FieldError] = []
    for key, value in labels.items():
        errs += [invalid_value(field, key, m) for m in qualified_name(str(key))]
        if not isinstance(value, str):
            errs.append(invalid_value(field, value, "must be a string"))
            continue
        errs += [invalid_value(field, value, m) for m in label_value(value)]
    return errs


TOTAL_ANNOTATION_SIZE = 256 * 1024


def annotation_errors(annotations: object, field: str) -> list[FieldError]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [invalid_value(field, annotations, "must be a map of strings")]
    errs: list[FieldError] = []
    size = 0
    for key, value in annotations.items():
        errs += [invalid_value(field, key, m) for m in qualified_name(str(key).lower())]
        if not isinstance(value, str):
            errs.append(invalid_value(field, value, "must be a string"))
            continue
        size += len(key) + len(value)
    if size > TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError(field, "FieldValueTooLong",
                               f"Too long: must have at most {TOTAL_ANNOTATION_SIZE} bytes"))
    return errs


def config_key(value: str) -> list[str]:
    return _syntax(value, 253, CONFIG_KEY_FMT, "a valid config key must consist of "
                   "alphanumeric characters, '-', '_' or '.'", "key.name", "KEY_NAME",
                   "key-name")
