# syntax=docker/dockerfile:1.7
# One image for every tickmesh service; the command picks the service:
#   docker run tickmesh python -m tickmesh.bars      (collector, bars, analytics, gateway)
# Stages: the dashboard (frontend/, when it exists), the locked Python workspace, the runtime.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# --- the dashboard: npm ci + vite build; an empty dist/ while frontend/ has no package.json
FROM ${NODE_IMAGE} AS frontend
WORKDIR /build
RUN --mount=type=bind,source=.,target=/context \
    mkdir -p dist \
    && if [ -f /context/frontend/package.json ]; then \
         cp -R /context/frontend/. . \
         && npm ci --no-audit --no-fund --loglevel=error \
         && npx vite build; \
       fi

# --- the Python workspace, installed from uv.lock into /app/.venv (no dev tools, no sources)
FROM ${PYTHON_IMAGE} AS python-build
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first (their layer survives code changes), then the workspace packages.
COPY pyproject.toml uv.lock ./
COPY services/collector/pyproject.toml services/collector/
COPY services/bars/pyproject.toml services/bars/
COPY services/analytics/pyproject.toml services/analytics/
COPY services/gateway/pyproject.toml services/gateway/
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace
COPY src/ src/
COPY services/ services/
RUN uv sync --frozen --no-dev --all-packages --no-editable

# --- the runtime: non-root, nothing writable but /tmp (mounted as tmpfs/emptyDir)
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 tickmesh \
    && useradd --system --uid 10001 --gid tickmesh --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tickmesh
WORKDIR /app
COPY --from=python-build /app/.venv /app/.venv
COPY --from=frontend /build/dist /app/frontend/dist
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache
# The mount point of compose's `certs` volume: a fresh named volume copies this ownership, so
# the non-root one-shot `certs` service can write the CA and every role's certificate there.
RUN install -d -o 10001 -g 10001 -m 0700 /certs
USER 10001:10001
# gRPC services 50051-50053 (TLS), their plaintext health-only ports 50151-50153, their metrics 9101-9103, the gateway's HTTP 8000.
EXPOSE 50051 50052 50053 50151 50152 50153 9101 9102 9103 8000
STOPSIGNAL SIGTERM
CMD ["python", "-m", "tickmesh.gateway"]
