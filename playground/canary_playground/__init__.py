"""Scaffolding for llm-canary's tests and local playground (never part of the product).

- :mod:`.kube`: a Kubernetes API server (with the deployment, ReplicaSet, garbage
  collection and HPA controllers, a simulated kubelet, RBAC and TokenReview) for tests,
  reached through the official client and kubectl (``python -m canary_playground.kube``);
- :mod:`.scripted_judge`: an OpenAI-compatible server whose verdicts are scripted by
  markers in the request text, and which can fail, stall, rate-limit and answer garbage;
- :mod:`.prometheus_server`: starts a real Prometheus on 127.0.0.1;
- :mod:`.exporter`: a tiny metrics exporter for that Prometheus to scrape;
- :mod:`.net`: a free local port (for the doubles, the tests and the benchmarks);
- :mod:`.demo` and :mod:`.demo_cmd`: ``canaryctl demo`` (registered as a plugin command).
"""
