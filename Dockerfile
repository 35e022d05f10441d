# Workbridge container image: `workbridge run` with the configuration at a mounted path.
#
#   docker build -t workbridge:0.1.0 .
#   docker run --rm -v "$PWD/conf:/etc/workbridge/config:ro" -p 8080:8080 workbridge:0.1.0
#
# Kubernetes probes /healthz and /readyz replace a HEALTHCHECK (helm/workbridge).
# Both stages use the same base, so the virtualenv's interpreter path stays valid; pin it by
# digest in your release pipeline (python:3.11-slim-bookworm@sha256:...).

# --- build: install the package and its dependencies into a virtualenv ------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/workbridge
# Only what the package needs (see .dockerignore): no tests, benchmarks, chart or caches.
COPY pyproject.toml README.md ./
COPY adapters ./adapters
# Every dependency ships wheels for CPython 3.11 (amd64 and arm64): nothing is compiled. The
# byte code is compiled here, as the final image's root filesystem is read-only.
RUN /opt/workbridge/bin/pip install --no-cache-dir . \
 && /opt/workbridge/bin/python -m compileall -q /opt/workbridge/lib \
 && /opt/workbridge/bin/workbridge --help > /dev/null

# --- final: the virtualenv on a clean base, run as an unprivileged user -------------------------
FROM python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_2:No HEALTHCHECK on purpose: Kubernetes probes /healthz and /readyz (helm/workbridge).
LABEL org.opencontainers.image.title="workbridge" \
      org.opencontainers.image.description="Work-management SaaS to Apache Kafka (CloudEvents)" \
      org.opencontainers.image.licenses="UNLICENSED"
RUN groupadd --system --gid 10001 workbridge \
 && useradd --system --uid 10001 --gid workbridge --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin workbridge
COPY --from=build /opt/workbridge /opt/workbridge
ENV PATH=/opt/workbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# SIGTERM goes straight to the app (PID 1), which drains and exits within server.shutdown_grace_s.
ENTRYPOINT ["workbridge", "run"]
CMD ["--config", "/etc/workbridge/config/config.yaml"]
