"""Every Kubernetes read and write of the controller; the only package importing
``kubernetes``.

- :mod:`.client`: ``connect()`` → :class:`~.client.Kube` (kubeconfig or in-cluster);
- :mod:`.errors`: ``NotFound``, ``Conflict``, ``Invalid``, ``Forbidden``, ``Gone``,
  ``Transient`` (all ``KubeError``) and ``map_errors()``;
- :mod:`.rules`: CanaryRule list/get/watch, status subresource, annotations, apply;
- :mod:`.deployments`: observe, ensure canary, set weight, promote, scale down;
- :mod:`.events`: Kubernetes Events about a rule;
- :mod:`.lease`: ``LeaderElector`` on a coordination.k8s.io Lease;
- :mod:`.judge_key`: the judge's API key from a Secret marked for llm-canary.
"""
