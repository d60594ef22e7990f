"""Every name the controller writes into or reads from the cluster, in one place.

Labels, annotations, environment variables and finalizers are an interface: users'
kubectl commands, GitOps tools, dashboards and applications depend on them, so each is
defined once here and imported wherever it is used.
"""

from __future__ import annotations

from controller import API_GROUP

PREFIX = f"{API_GROUP}/"
RESERVED_PREFIX = PREFIX
"""Keys under this prefix are the controller's; rules may not set them on pods."""

# -- manual controls (annotations on the CanaryRule; kubectl and GitOps friendly) --------
ACTION_ANNOTATION = PREFIX + "action"
ACTION_ID_ANNOTATION = PREFIX + "action-id"
ACTION_REASON_ANNOTATION = PREFIX + "action-reason"
KAPPA_ANNOTATION = PREFIX + "judge-kappa"
"""Cohen's kappa of the judge against human labels, as measured by ``judge calibrate``."""

# -- the CanaryRule ---------------------------------------------------------------------
FINALIZER = PREFIX + "rollout"
"""On a CanaryRule while it has something to undo (a rollout in flight, canary or holdback
pods, a target running a template not yet accepted): deleting the rule then restores the
target and removes the canary first. A finished rule carries none, so deleting it is
instant."""

# -- Secrets the controller may use --------------------------------------------------------
JUDGE_KEY_LABEL = PREFIX + "judge-key"
"""A Secret holds a judge API key for llm-canary only with this label set to ``"true"``:
a rule can name a Secret, but only one its namespace's owner marked for the judge is read
(any other is refused after the read, before its value is used)."""

# -- ingestion ------------------------------------------------------------------------------
INGEST_AUDIENCE = "llm-canary"
"""The audience of the projected ServiceAccount tokens clients send to the ingestion API
(a token for the Kubernetes API itself is refused: it would be replayable there)."""

# -- the canary / holdback Deployments and their pods ----------------------------------------
COHORT_LABEL = PREFIX + "cohort"
"""On canary pods (value ``canary``) and holdback pods (``holdback``); the target's pods do
not carry it."""
RULE_LABEL = PREFIX + "rule"
"""On the canary and holdback Deployments: the name of the CanaryRule that owns them."""
REVISION_LABEL = PREFIX + "revision"
"""On canary and holdback pods (and the promoted target's pods): the revision id of the
template they run (a hash of the template, like ``pod-template-hash``)."""
REVISION_ANNOTATION = REVISION_LABEL
"""On the canary and holdback Deployments: the revision their template runs."""
PROMOTED_ANNOTATION = PREFIX + "promoted-revision"
"""On the target after promotion: the canary revision whose template it now runs."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "llm-canary"
"""Value of ``app.kubernetes.io/managed-by`` (the Deployments watch selects on it) and the
Events' reporting component."""
CANARY_SUFFIX = "-canary"
HOLDBACK_SUFFIX = "-holdback"
WORKLOAD_SUFFIX_MAX = max(len(CANARY_SUFFIX), len(HOLDBACK_SUFFIX))

# -- environment of canary containers (what the application reads) -------------------------
COHORT_ENV = "CANARY_COHORT"
"""``canary`` in canary pods, ``baseline`` in holdback pods; a missing value means
``baseline``."""
REVISION_ENV = "CANARY_REVISION"
"""The revision id (:data:`REVISION_LABEL`) in canary, holdback and promoted pods, so
samples name the revision that served them (the SDK and OTLP ingestion read it)."""
RESERVED_ENV = frozenset({COHORT_ENV, REVISION_ENV})

CANARY_COHORT = "canary"
"""The value of :data:`COHORT_LABEL` and :data:`COHORT_ENV` on canary pods."""
BASELINE_COHORT = "baseline"
HOLDBACK = "holdback"
"""The value of :data:`COHORT_LABEL` on holdback pods (their :data:`COHORT_ENV` is
``baseline``: they are the baseline of the bake)."""

# -- what the canary never copies from the target ---------------------------------------------
GITOPS_TRACKING_LABELS = (
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "kustomize.toolkit.fluxcd.io/namespace",
    "helm.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/namespace",
)
"""Labels on the target *Deployment* (not its pods) by which Argo CD and Flux track what
they manage: a canary carrying them would be pruned (or adopted) as theirs. The
controller's ``--exclude-label`` flag (chart ``controller.excludeLabels``) replaces the
list. The target's annotations are never copied (``argocd.argoproj.io/tracking-id``,
``last-applied-configuration``, Helm's release annotations)."""
