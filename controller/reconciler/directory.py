"""The rule directory: which CanaryRules exist and which ServiceAccounts may report for
each, kept current by the manager's rule and Deployment watches.

Who may report for a rule ``ns/rule``:

- the ServiceAccount of the pods of the rule's target Deployment (``spec.template.spec.
  serviceAccountName``, else ``default``) in ``ns`` (the canary runs a copy of that pod
  template, so the same account): the workload reports its own traffic. The
  controller watches no target: the account is read once, on the first report for the rule
  (a GET of the target, from an ingestion worker thread), and kept current by every
  reconcile of the rule, which observes the target anyway;
- every ServiceAccount the rule lists in ``spec.ingest.serviceAccounts`` (``ns/name``, or a
  bare name in the rule's namespace), e.g. a feedback service or a batch labelling job.

Nothing else: the rule's author decides who else reports, and a caller allowed for rule A
gains nothing for rule B. The directory reads raw objects so that a rule failing
validation still resolves (its status says why it does not progress).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from controller.models import RuleKey
from controller.models.identity import ServiceAccountRef
from controller.models.rule import ModelPrice
from controller.ports import DirectoryUnavailable

if TYPE_CHECKING:
    from controller.engine import Observed
    from controller.models import CanaryRule

AccountLookup = Callable[[str, str], "str | None"]
"""(namespace, Deployment) -> the ServiceAccount its pods run as; None when it does not
exist. May raise: :meth:`Directory.reporters` then raises :class:`DirectoryUnavailable`."""

MISSING_RECHECK_SECONDS = 10.0
"""A target found missing is not looked up again for this long (a batch of records for a
rule whose target does not exist yet costs one GET, not one per record)."""


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
    return account_of_template((deployment.get("spec") or {}).get("template") or {})


def account_of_template(template: dict[str, Any]) -> str:
    """The ServiceAccount of a pod template (``default`` when unset)."""
    spec = template.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


class Directory:
    """:class:`controller.ports.RuleDirectory`: rules fed by the manager's rule watch,
    target accounts looked up on first use and refreshed by each reconcile."""

    def __init__(self, lookup: AccountLookup | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: dict[RuleKey, _Rule] = {}
        self._accounts: dict[tuple[str, str], str] = {}  # (ns, deployment) -> SA name
        self._lookup = lookup
        self._missing: dict[tuple[str, str], float] = {}  # target -> when found missing
        self._rules_listed = False

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._rules_listed

    def reporters(self, key: RuleKey) -> frozenset[ServiceAccountRef] | None:
        with self._lock:
            rule = self._rules.get(key)
            if rule is None:
                return None
            found = set(rule.listed)
            account = self._accounts.get((key.namespace, rule.target or ""))
        if rule.target and account is None:
            account = self._look_up(key.namespace, rule.target)
        if account is not None:
            found.add(ServiceAccountRef(key.namespace, account))
        return frozenset(found)

    def _look_up(self, namespace: str, target: str) -> str | None:
        """The target's account from the API server (outside the lock), remembered; a
        missing target is asked again only after :data:`MISSING_RECHECK_SECONDS`."""
        where = (namespace, target)
        with self._lock:
            missing_since = self._missing.get(where)
        if self._lookup is None or (missing_since is not None and
                                    time.monotonic() - missing_since < MISSING_RECHECK_SECONDS):
            return None
        try:
            account = self._lookup(namespace, target)
        except Exception as exc:
            raise DirectoryUnavailable(
                f"cannot read Deployment {namespace}/{target} to authorize its reporters "
                f"({type(exc).__name__}); retry") from None
        with self._lock:
            if account is None:
                self._missing[where] = time.monotonic()
            else:
                self._missing.pop(where, None)
                self._accounts[where] = account
        return account

    def pricing(self, key: RuleKey) -> tuple[ModelPrice, ...]:
        with self._lock:
            rule = self._rules.get(key)
        return rule.pricing if rule else ()

    # -- fed by the watches and the reconciles ------------------------------------------

    def replace_rules(self, items: list[dict[str, Any]]) -> None:
        """A full list of rules (after a list or relist)."""
        rules = dict(_rule_of(obj) for obj in items)
        with self._lock:
            self._rules = rules
            self._rules_listed = True
            self._keep_targets()

    def rule_event(self, kind: str, obj: dict[str, Any]) -> None:
        key, rule = _rule_of(obj)
        with self._lock:
            if kind == "DELETED":
                self._rules.pop(key, None)
            else:
                self._rules[key] = rule
            self._keep_targets()

    def observed(self, rule: CanaryRule, observed: Observed) -> None:
        """A reconcile saw the rule's target: its account, as it is now."""
        where = (rule.key.namespace, rule.spec.target_ref.name)
        with self._lock:
            if observed.target is None:
                self._accounts.pop(where, None)
                self._missing[where] = time.monotonic()
            else:
                self._accounts[where] = account_of_template(observed.target_template)
                self._missing.pop(where, None)

    def _keep_targets(self) -> None:
        """Forget accounts of Deployments no rule names (bounded by the rules)."""
        wanted = {(k.namespace, r.target) for k, r in self._rules.items() if r.target}
        for where in [w for w in self._accounts if w not in wanted]:
            del self._accounts[where]
        for where in [w for w in self._missing if w not in wanted]:
            del self._missing[where]

    def reset(self) -> None:
        """Forget everything (this replica stopped leading: nothing is watched)."""
        with self._lock:
            self._rules.clear()
            self._accounts.clear()
            self._missing.clear()
            self._rules_listed = False

