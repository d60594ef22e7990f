"""A local playground: the Kubernetes API emulator, a scripted OpenAI-compatible judge,
an exporter and Prometheus launcher, and ``canaryctl demo`` built from them."""
