# The controller image the Helm chart runs. Build it with `scripts/build-image` (buildah;
# `docker build` / `podman build` should read this file too, not tried here):
#
#   scripts/build-image --tag llm-canary:0.1.0
#
# - entrypoint `canary-controller`; `canaryctl` is on PATH too (for `kubectl exec`);
# - runs as UID/GID 65532 and never writes to its root filesystem: /data (the sample store)
#   and /tmp (HOME) are the only writable paths, both volumes in the chart;
# - holds the product wheel (the `controller` package and the `llm_canary` client SDK) and its
#   dependencies in the venv /opt/llm-canary; no test doubles (`playground/`), no tests, no
#   compilers, no pip.
#
# BASE must provide Python 3.11+ with the `venv` module at the same path in both stages (the
# venv is copied from the build stage). The default is the official Python image; where no
# container registry is reachable, `scripts/build-image` builds a local Debian bookworm base
# (python3, python3-venv) with mmdebstrap and passes it here.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . ./
# The product wheel, then the venv with it and its dependencies (binary wheels from the
# index: nothing is compiled). pip and setuptools leave the venv afterwards, and so do the
# third-party test suites (numpy/scipy ship theirs inside the package) and the Kubernetes
# client's asyncio twin (kubernetes/aio, 66 MB the controller never imports; the import check
# below and the image test catch it if that changes). pip's HTTP cache is a build cache
# mount, never part of a layer. The optional build secret `pip_ca` is a CA bundle
# for pip (a TLS-intercepting proxy between the build and the package index); it is not kept.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/llm-canary \
 && /opt/llm-canary/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/llm-canary/bin/pip install --only-binary=:all: /wheels/llm_canary-*.whl \
 && /opt/llm-canary/bin/pip uninstall -y pip setuptools \
 && find /opt/llm-canary -depth -type d \( -name tests -o -name _tests \) -path '*/site-packages/*' \
      -exec rm -rf {} + \
 && rm -rf /opt/llm-canary/lib/python3*/site-packages/kubernetes/aio \
 && /opt/llm-canary/bin/python -c 'import controller.main, controller.cli, controller.actuator.client, llm_canary'


FROM ${BASE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/llm-canary/llm-canary
LABEL org.opencontainers.image.title="llm-canary" \
      org.opencontainers.image.description="Canary release controller for LLM-powered services" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/llm-canary /opt/llm-canary
# A named user for 65532 (tools that look the uid up), HOME on the /tmp volume, and /data
# owned by it for runs without a volume (the chart mounts one there).
RUN echo 'nonroot:x:65532:65532:llm-canary:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group \
 && mkdir -p /data && chown 65532:65532 /data && chmod 0750 /data
ENV PATH=/opt/llm-canary/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["canary-controller"]
