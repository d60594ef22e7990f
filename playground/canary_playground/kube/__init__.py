"""A Kubernetes API server (and the controllers behind it) for tests, reached through the
official ``kubernetes`` client, ``kubectl`` and the controller under test.

Why our own server and not ``kmock``: the controller under test is its own process and
must get right what a real cluster does - status and scale subresources, optimistic
concurrency (409), watch resume and 410 Gone, Deployments that take time to become
available (ReplicaSets, pods, readiness, progress deadlines), finalizers and garbage
collection, RBAC and admission. ``kmock`` stores merged dicts and answers at once. This is
a stdlib HTTP server with an in-memory store and event-driven controllers, in modules by
concern:

- :mod:`.resources` (what is served), :mod:`.storage` (objects, resourceVersion, watch
  history, write rules), :mod:`.patching`, :mod:`.selectors`, :mod:`.schema` (CRDs),
  :mod:`.names` / :mod:`.validation` / :mod:`.defaults`;
- controllers on :mod:`.runtime`: :mod:`.deployments`, :mod:`.replicasets`,
  :mod:`.kubelet` (pods, readiness, image markers), :mod:`.gc`, :mod:`.hpa`;
- :mod:`.auth` (tokens, TokenReview), :mod:`.rbac` (authorization, ownerReference
  admission), :mod:`.discovery` and :mod:`.tables` (for kubectl);
- :mod:`.api` (the verbs), :mod:`.http` (transport, watch, side API), :mod:`.handle`
  (``running_emulator``), :mod:`.chart` (the Helm chart's RBAC).

Run: ``python -m canary_playground.kube --port 0 --kubeconfig /tmp/kubeconfig`` (prints
``listening on http://127.0.0.1:PORT``), or ``with running_emulator() as emu:``.
"""

from .handle import EmulatorHandle, running_emulator, write_kubeconfig
from .kubelet import UNAVAILABLE_ANNOTATION
from .patching import json_patch, merge_patch, strategic_merge

__all__ = ["UNAVAILABLE_ANNOTATION", "EmulatorHandle", "json_patch", "merge_patch",
           "running_emulator", "strategic_merge", "write_kubeconfig"]
