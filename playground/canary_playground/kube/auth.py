"""Authentication: bearer tokens -> identities, ServiceAccount tokens, the TokenReview API.

- The admin token (the default kubeconfig's) is ``kubernetes-admin`` in
  ``system:masters``: always allowed.
- ServiceAccount tokens are JWTs (signed by the emulator) for
  ``system:serviceaccount:<ns>:<name>`` with groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<ns>`` and ``system:authenticated``, issued through the side API
  or the TokenRequest API (``serviceaccounts/<name>/token``), with audiences (default: the
  API server's) and an expiry. A token bound to a ServiceAccount object stops working when
  that object is deleted (or re-created with another uid).
- A token is accepted only for an audience it was issued for: the API server accepts
  tokens for its own audience only, so a token issued for ``llm-canary`` cannot call the
  API (401), and TokenReview answers ``authenticated: false`` when ``spec.audiences`` and
  the token's audiences do not intersect, with the real error texts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import JSON, ApiError, invalid, required
from .resources import Registry
from .storage import Store

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def admin(self) -> bool:
        return "system:masters" in self.groups

    def user_info(self) -> JSON:
        info: JSON = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = {k: list(v) for k, v in self.extra}
        return info


ADMIN = Identity("kubernetes-admin", groups=("system:masters", "system:authenticated"))


def service_account_identity(ns: str, name: str, uid: str) -> Identity:
    return Identity(f"system:serviceaccount:{ns}:{name}", uid=uid,
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}",
                            "system:authenticated"))


@dataclass
class TokenRecord:
    identity: Identity
    audiences: tuple[str, ...]
    expires: float | None
    bound: tuple[str, str, str] | None = None  # ServiceAccount (namespace, name, uid)
    issued: float = field(default_factory=time.time)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AuthError(Exception):
    """Why a token does not authenticate (the text TokenReview puts in ``status.error``)."""


class Authenticator:
    def __init__(self, store: Store, registry: Registry, admin_token: str | None) -> None:
        self.store = store
        self.service_accounts = registry.get("", "serviceaccounts")
        self.admin_token = admin_token
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self.tokens: dict[str, TokenRecord] = {}

    # -- issuing -----------------------------------------------------------------------

    def _jwt(self, claims: JSON) -> str:
        header = _b64(json.dumps({"alg": "HS256", "kid": "emulator", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256)
        return f"{header}.{payload}.{_b64(signature.digest())}"

    def issue_service_account(self, ns: str, name: str, *, audiences: list[str] | None = None,
                              expiration_seconds: float | None = 3600.0,
                              require_object: bool = False) -> tuple[str, TokenRecord]:
        """A ServiceAccount token (bound to the object when it exists)."""
        sa = self.store.find(self.service_accounts, ns, name)
        if sa is None and require_object:
            raise ApiError(404, "NotFound", f'serviceaccounts "{name}" not found',
                           details={"name": name, "kind": "serviceaccounts"})
        uid = sa["metadata"]["uid"] if sa is not None else str(uuid.uuid5(
            uuid.NAMESPACE_URL, f"serviceaccount/{ns}/{name}"))
        now = time.time()
        expires = now + expiration_seconds if expiration_seconds is not None else None
        auds = tuple(audiences or [API_AUDIENCE])
        claims: JSON = {"aud": list(auds), "iat": int(now), "nbf": int(now), "iss": ISSUER,
                        "jti": str(uuid.uuid4()), "sub": f"system:serviceaccount:{ns}:{name}",
                        "kubernetes.io": {"namespace": ns,
                                          "serviceaccount": {"name": name, "uid": uid}}}
        if expires is not None:
            claims["exp"] = int(expires)
        record = TokenRecord(service_account_identity(ns, name, uid), auds, expires,
                             bound=(ns, name, uid) if sa is not None else None, issued=now)
        token = self._jwt(claims)
        with self._lock:
            self.tokens[token] = record
        return token, record

    def issue_user(self, username: str, groups: list[str] | None = None, *,
                   audiences: list[str] | None = None,
                   expiration_seconds: float | None = None) -> tuple[str, TokenRecord]:
        """A static token for a user (as ``--token-auth-file`` would configure)."""
        all_groups = tuple(dict.fromkeys([*(groups or []), "system:authenticated"]))
        expires = time.time() + expiration_seconds if expiration_seconds is not None else None
        record = TokenRecord(Identity(username, groups=all_groups),
                             tuple(audiences or [API_AUDIENCE]), expires)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = record
        return token, record

    # -- checking ----------------------------------------------------------------------

    def check(self, token: str, audiences: list[str] | None = None
              ) -> tuple[Identity, list[str]]:
        """The identity of ``token`` and the audiences it is valid for; ``AuthError``."""
        wanted = list(audiences or [API_AUDIENCE])
        if self.admin_token is not None and hmac.compare_digest(token, self.admin_token):
            if API_AUDIENCE not in wanted:
                raise AuthError(f"token audiences {json.dumps([API_AUDIENCE])} is invalid "
                                f"for the target audiences {json.dumps(wanted)}")
            return ADMIN, [API_AUDIENCE]
        with self._lock:
            record = self.tokens.get(token)
        if record is None:
            raise AuthError("token lookup failed")
        if record.expires is not None and record.expires <= time.time():
            raise AuthError("service account token has expired" if record.bound or
                            record.identity.username.startswith("system:serviceaccount:")
                            else "token has expired")
        shared = [a for a in wanted if a in record.audiences]
        if not shared:
            raise AuthError(f"token audiences {json.dumps(list(record.audiences))} is invalid "
                            f"for the target audiences {json.dumps(wanted)}")
        if record.bound is not None:
            ns, name, uid = record.bound
            sa = self.store.find(self.service_accounts, ns, name)
            if sa is None or sa["metadata"]["uid"] != uid:
                raise AuthError(f"service account {ns}/{name} has been deleted"
                                if sa is None else f"service account UID ({uid}) does not "
                                f"match service account value ({sa['metadata']['uid']})")
        return record.identity, shared

    def authenticate(self, header: str | None) -> Identity | None:
        """The identity of an ``Authorization`` header; None when it does not
        authenticate (the caller answers 401)."""
        if not header or not header.startswith("Bearer "):
            return None
        try:
            identity, _ = self.check(header.removeprefix("Bearer ").strip())
        except AuthError:
            return None
        return identity

    # -- the TokenReview API -----------------------------------------------------------

    def token_review(self, body: JSON) -> JSON:
        spec = body.get("spec") or {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise invalid("TokenReview", "authentication.k8s.io", "",
                          [required("spec.token")])
        audiences = [str(a) for a in spec.get("audiences") or []]
        out: JSON = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                     "metadata": {"creationTimestamp": None}, "spec": spec}
        try:
            identity, shared = self.check(token, audiences or None)
        except AuthError as exc:
            out["status"] = {"user": {}, "error": f"[invalid bearer token, {exc}]"}
            return out
        out["status"] = {"authenticated": True, "user": identity.user_info(),
                         "audiences": shared}
        return out

    def token_request(self, ns: str, name: str, body: JSON) -> JSON:
        """``POST serviceaccounts/<name>/token``: a bound token for an existing account."""
        spec: dict[str, Any] = dict(body.get("spec") or {})
        seconds = int(spec.get("expirationSeconds") or 3600)
        if seconds < 600:
            raise invalid("TokenRequest", "authentication.k8s.io", name, [required(
                "spec.expirationSeconds", "may not specify a duration less than 10 minutes")])
        token, record = self.issue_service_account(
            ns, name, audiences=[str(a) for a in spec.get("audiences") or []] or None,
            expiration_seconds=seconds, require_object=True)
        spec.update(expirationSeconds=seconds, audiences=list(record.audiences))
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires or 0))
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
                "spec": spec, "status": {"token": token, "expirationTimestamp": expires}}
