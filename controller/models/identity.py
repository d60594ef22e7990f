"""Who is calling the ingestion API, and who may report for a rule (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, order=True)
class ServiceAccountRef:
    """A Kubernetes ServiceAccount, ``namespace/name``."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str, default_namespace: str) -> ServiceAccountRef:
        """``ns/name``, or ``name`` in ``default_namespace``."""
        namespace, _, name = text.rpartition("/")
        return cls(namespace or default_namespace, name)

    @classmethod
    def from_username(cls, username: str) -> ServiceAccountRef | None:
        """The ServiceAccount of a ``system:serviceaccount:<ns>:<name>`` user, else None."""
        if not username.startswith(SERVICE_ACCOUNT_PREFIX):
            return None
        namespace, sep, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
        if not sep or not namespace or not name or ":" in name:
            return None
        return cls(namespace, name)


@dataclass(frozen=True)
class TokenReviewResult:
    """What the API server said about a bearer token (``authentication.k8s.io/v1``)."""

    authenticated: bool
    username: str = ""
    groups: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Caller:
    """An authenticated client of the ingestion API. ``service_account`` is None only for
    anonymous callers, which exist only when the operator opted into unauthenticated
    ingestion (``insecure``)."""

    service_account: ServiceAccountRef | None
    insecure: bool = False

    @property
    def namespace(self) -> str | None:
        """Where a record without ``namespace`` belongs: the caller's own namespace."""
        return self.service_account.namespace if self.service_account else None

    def __str__(self) -> str:
        return str(self.service_account) if self.service_account else "anonymous"


ANONYMOUS = Caller(None, insecure=True)
