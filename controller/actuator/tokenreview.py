"""Asking the API server who holds a bearer token (``authentication.k8s.io/v1``
TokenReview): the ingestion API's authentication.

Why TokenReview: the API server is the only party that can verify a projected
ServiceAccount token completely (signature, expiry, audience, and that the Pod and
ServiceAccount it is bound to still exist), and it works with every issuer a cluster is
configured with. The token travels in the request body only; it is never logged, and an
error names the failure, never the token.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.models.identity import TokenReviewResult

from .client import Kube
from .errors import KubeError

PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class TokenReviewer:
    """:class:`controller.ports.TokenReviewer` over the cluster connection."""

    def __init__(self, kube: Kube, *, timeout: tuple[float, float] = (3.0, 5.0)) -> None:
        self.kube = kube
        self.timeout = timeout

    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult:
        """The API server's verdict on ``token`` for ``audiences``; raises
        :class:`~controller.actuator.errors.KubeError` when it cannot be asked."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": list(audiences)}}
        try:
            answer = self.kube.request("POST", PATH, body=body, timeout=self.timeout)
        except KubeError as exc:
            # the message is the API server's; it never echoes the request body
            raise KubeError(f"TokenReview failed: {exc.message}", reason=exc.reason,
                            status=exc.status) from None
        status = answer.get("status") or {}
        user = status.get("user") or {}
        return TokenReviewResult(
            authenticated=bool(status.get("authenticated")),
            username=str(user.get("username") or ""),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            audiences=tuple(str(a) for a in status.get("audiences") or ()),
            error=str(status.get("error") or "")[:300],
        )
