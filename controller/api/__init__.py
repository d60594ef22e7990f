"""The controller's HTTP API: ingestion, metrics and probes (see :mod:`.app`).

Split by concern: :mod:`.app` (server, routes, probes), :mod:`.auth` (who is calling:
ServiceAccount tokens via TokenReview), :mod:`.limits` (size, time and concurrency
bounds), :mod:`.ingestion` (parse, authorize per rule, store).
"""

from .app import ApiServer, json_response
from .auth import Insecure, TokenReviewAuthenticator
from .ingestion import Answer, Ingestion
from .limits import Limits

__all__ = [
    "Answer",
    "ApiServer",
    "Ingestion",
    "Insecure",
    "Limits",
    "TokenReviewAuthenticator",
    "json_response",
]
