# The controller image the Helm chart runs (`canary-controller` on PATH, UID 65532,
# read-only root filesystem; /data and /tmp are volumes in the chart).
# Not built in this repository's CI (no container engine there); build with
#   docker build -t ghcr.io/llm-canary/llm-canary:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["canary-controller"]
