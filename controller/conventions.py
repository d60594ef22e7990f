"""Every name the controller writes into or reads from the cluster, in one place.

Labels, annotations, environment variables and finalizers are an interface: users'
kubectl commands, GitOps tools, dashboards and applications depend on them, so each is
defined once here and imported wherever it is used.
"""

from __future__ import annotations

from controller import API_GROUP

PREFIX = f"{API_GROUP}/"

# -- manual controls (annotations on the CanaryRule; kubectl and GitOps friendly) --------
ACTION_ANNOTATION = PREFIX + "action"
ACTION_ID_ANNOTATION = PREFIX + "action-id"
ACTION_REASON_ANNOTATION = PREFIX + "action-reason"
KAPPA_ANNOTATION = PREFIX + "judge-kappa"
"""Cohen's kappa of the judge against human labels, as measured by ``judge calibrate``."""

# -- Secrets the controller may use --------------------------------------------------------
JUDGE_KEY_LABEL = PREFIX + "judge-key"
"""A Secret holds a judge API key for llm-canary only with this label set to ``"true"``:
a rule can name a Secret, but only one its namespace's owner marked for the judge is read
(any other is refused after the read, before its value is used)."""

# -- ingestion ------------------------------------------------------------------------------
INGEST_AUDIENCE = "llm-canary"
"""The audience of the projected ServiceAccount tokens clients send to the ingestion API
(a token for the Kubernetes API itself is refused: it would be replayable there)."""

# -- the canary Deployment and its pods ---------------------------------------------------
COHORT_LABEL = PREFIX + "cohort"
"""On canary pods (value ``canary``); the target's pods do not carry it."""
RULE_LABEL = PREFIX + "rule"
"""On the canary Deployment: the name of the CanaryRule that owns it."""
REVISION_ANNOTATION = PREFIX + "revision"
"""On the canary Deployment and its pod template: the canary revision it runs."""
PROMOTED_ANNOTATION = PREFIX + "promoted-revision"
"""On the target after promotion: the canary revision whose template it now runs."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "llm-canary"
"""Value of ``app.kubernetes.io/managed-by`` and the Events' reporting component."""

# -- environment of canary containers (what the application reads) -------------------------
COHORT_ENV = "CANARY_COHORT"
"""``canary`` in canary pods; a missing value means ``baseline``."""

REVISION_ENV = "CANARY_REVISION"
"""The canary revision (:data:`REVISION_ANNOTATION`) in canary pods, so samples name the
revision that served them; baseline pods have no value."""

CANARY_COHORT = "canary"
"""The value of :data:`COHORT_LABEL` and :data:`COHORT_ENV` on canary pods."""
