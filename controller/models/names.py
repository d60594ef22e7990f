"""Kubernetes name, label and annotation syntax, checked where users write them.

What the API server would reject later (a 422 on the canary Deployment, in the middle of
a rollout) is refused at ``canaryctl validate`` time instead, with the field named. The
rules are kube-apiserver's (``k8s.io/apimachinery/pkg/util/validation``):

- a *label value* is at most 63 characters, empty or alphanumeric at both ends with
  ``-``, ``_`` and ``.`` inside;
- a *qualified name* (label and annotation keys) is an optional DNS-subdomain prefix of
  at most 253 characters and ``/``, then a name of at most 63 characters with the label
  value's character rules (non-empty);
- a *DNS-1123 subdomain* (object names) is at most 253 lowercase alphanumerics, ``-``
  and ``.``, alphanumeric at both ends.
"""

from __future__ import annotations

import re

LABEL_VALUE_MAX = 63
SUBDOMAIN_MAX = 253
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[^=\x00-\x1f\x7f]+$")


def label_value_error(value: str) -> str | None:
    """Why ``value`` cannot be a label value, or None."""
    if len(value) > LABEL_VALUE_MAX:
        return f"must be no more than {LABEL_VALUE_MAX} characters (has {len(value)})"
    if value and not _NAME_PART.match(value):
        return ("must be empty or consist of alphanumeric characters, '-', '_' or '.', and "
                "start and end with an alphanumeric character")
    return None


def subdomain_error(value: str, limit: int = SUBDOMAIN_MAX) -> str | None:
    """Why ``value`` cannot be a DNS-1123 subdomain of at most ``limit`` characters."""
    if len(value) > limit:
        return f"must be no more than {limit} characters (has {len(value)})"
    if not _SUBDOMAIN.match(value):
        return ("must consist of lower case alphanumeric characters, '-' or '.', and start "
                "and end with an alphanumeric character")
    return None


def qualified_name_error(key: str) -> str | None:
    """Why ``key`` cannot be a label or annotation key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        why = subdomain_error(prefix)
        if why:
            return f"prefix part {why}"
    if not name:
        return "name part must be non-empty"
    if len(name) > LABEL_VALUE_MAX:
        return f"name part must be no more than {LABEL_VALUE_MAX} characters"
    if not _NAME_PART.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character")
    return None


def env_name_error(name: str) -> str | None:
    """Why ``name`` cannot be an environment variable name (Kubernetes 1.30 rules)."""
    if not _ENV_NAME.match(name):
        return "must consist of printable characters other than '='"
    return None
