"""Finding the HorizontalPodAutoscaler that owns a Deployment's replicas.

An HPA names its target in ``spec.scaleTargetRef``; there is no back-reference, so the
namespace's HPAs are listed (``autoscaling/v2``, the version every supported Kubernetes
serves). A cluster without the autoscaling API answers 404: no autoscaler.
"""

from __future__ import annotations

from .client import Kube, path_of
from .errors import NotFound


def autoscaler_for(kube: Kube, namespace: str, deployment: str) -> str | None:
    """The name of an HPA whose scaleTargetRef is the Deployment ``deployment``."""
    try:
        answer = kube.request("GET", path_of("autoscaling/v2", "horizontalpodautoscalers",
                                             namespace))
    except NotFound:
        return None
    for hpa in answer.get("items") or []:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        group = str(ref.get("apiVersion", "apps/v1")).split("/")[0]
        if ref.get("kind") == "Deployment" and ref.get("name") == deployment and \
                group in ("apps", "extensions"):
            return str((hpa.get("metadata") or {}).get("name"))
    return None
