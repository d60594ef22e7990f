"""The rule directory: which CanaryRules exist and which ServiceAccounts may report for
each, kept current by the manager's rule and Deployment watches.

Who may report for a rule ``ns/rule``:

- the ServiceAccount of the pods of the rule's target Deployment (``spec.template.spec.
  serviceAccountName``, else ``default``) in ``ns``, and of its canary Deployment (the same
  pod template, so normally the same account): the workload reports its own traffic;
- every ServiceAccount the rule lists in ``spec.ingest.serviceAccounts`` (``ns/name``, or a
  bare name in the rule's namespace), e.g. a feedback service or a batch labelling job.

Nothing else: the rule's author decides who else reports, and a caller allowed for rule A
gains nothing for rule B. The directory reads raw objects so that a rule failing
validation still resolves (its status says why it does not progress).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from controller.models import RuleKey
from controller.models.identity import ServiceAccountRef
from controller.models.rule import ModelPrice

CANARY_SUFFIX = "-canary"


@dataclass(frozen=True)
class _Rule:
    target: str | None
    listed: frozenset[ServiceAccountRef]
    pricing: tuple[ModelPrice, ...] = ()


def _meta(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rule_of(obj: dict[str, Any]) -> tuple[RuleKey, _Rule]:
    namespace, name = _meta(obj)
    spec = _dict(obj.get("spec"))
    target = _dict(spec.get("targetRef")).get("name")
    listed = _dict(spec.get("ingest")).get("serviceAccounts")
    refs = frozenset(
        ServiceAccountRef.parse(entry, namespace)
        for entry in (listed if isinstance(listed, list) else [])
        if isinstance(entry, str) and entry.strip("/")
    )
    return RuleKey(namespace, name), _Rule(target if isinstance(target, str) else None, refs,
                                           _prices(spec.get("pricing")))


def _prices(raw: Any) -> tuple[ModelPrice, ...]:
    """The rule's valid ``spec.pricing`` entries (an invalid rule is reported elsewhere)."""
    out: list[ModelPrice] = []
    for entry in raw if isinstance(raw, list) else []:
        try:
            out.append(ModelPrice.model_validate(entry))
        except ValidationError:
            continue
    return tuple(out)


def service_account_of(deployment: dict[str, Any]) -> str:
    """The ServiceAccount a Deployment's pods run as (``default`` when unset)."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


class Directory:
    """:class:`controller.ports.RuleDirectory`, fed by the manager's watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[RuleKey, _Rule] = {}
        self._accounts: dict[tuple[str, str], str] = {}  # (ns, deployment) -> SA name
        self._rules_listed = False
        self._deployments_listed = False

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._rules_listed and self._deployments_listed

    def reporters(self, key: RuleKey) -> frozenset[ServiceAccountRef] | None:
        with self._lock:
            rule = self._rules.get(key)
            if rule is None:
                return None
            found = set(rule.listed)
            if rule.target:
                for name in (rule.target, rule.target + CANARY_SUFFIX):
                    account = self._accounts.get((key.namespace, name))
                    if account is not None:
                        found.add(ServiceAccountRef(key.namespace, account))
        return frozenset(found)

    def pricing(self, key: RuleKey) -> tuple[ModelPrice, ...]:
        with self._lock:
            rule = self._rules.get(key)
        return rule.pricing if rule else ()

    # -- fed by the watches -------------------------------------------------------------

    def replace_rules(self, items: list[dict[str, Any]]) -> None:
        """A full list of rules (after a list or relist)."""
        rules = dict(_rule_of(obj) for obj in items)
        with self._lock:
            self._rules = rules
            self._rules_listed = True

    def rule_event(self, kind: str, obj: dict[str, Any]) -> None:
        key, rule = _rule_of(obj)
        with self._lock:
            if kind == "DELETED":
                self._rules.pop(key, None)
            else:
                self._rules[key] = rule

    def replace_deployments(self, items: list[dict[str, Any]]) -> None:
        accounts = {_meta(obj): service_account_of(obj) for obj in items}
        with self._lock:
            self._accounts = accounts
            self._deployments_listed = True

    def deployment_event(self, kind: str, obj: dict[str, Any]) -> None:
        where = _meta(obj)
        with self._lock:
            if kind == "DELETED":
                self._accounts.pop(where, None)
            else:
                self._accounts[where] = service_account_of(obj)

    def reset(self) -> None:
        """Forget everything (this replica stopped leading: nothing is watched)."""
        with self._lock:
            self._rules.clear()
            self._accounts.clear()
            self._rules_listed = self._deployments_listed = False
