# syntax=docker/dockerfile:1.7
#
# Two images from one file (BuildKit builds only the stages a target needs):
#
#   docker build -t ghcr.io/merci/merci:0.1.0 .                      # Python: api, directory, workers, jobs
#   docker build --target gateway -t ghcr.io/merci/gateway:0.1.0 .   # Hive Gateway on gateway/supergraph.graphql
#
# The Python image is the last stage, so a plain `docker build` makes it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# ---------------------------------------------------------------- gateway (Node)

FROM ${NODE_IMAGE} AS gateway-deps
WORKDIR /app
COPY gateway/package*.json gateway/.npmrc ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS gateway
ENV NODE_ENV=production \
    HOME=/tmp
RUN groupadd --system --gid 10001 merci \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin merci
WORKDIR /app
COPY --from=gateway-deps /app/node_modules ./node_modules
COPY gateway/ ./
USER 10001:10001
EXPOSE 4000
# Hive Gateway with gateway.config.mjs: the committed supergraph.graphql, subgraph URLs from
# MERCI_API_URL / MERCI_DIRECTORY_URL, port from PORT. /healthcheck and /readiness are its probes.
ENTRYPOINT ["/app/node_modules/.bin/hive-gateway"]
CMD ["supergraph", "--host", "0.0.0.0"]

# ---------------------------------------------------------------- merci (Python)

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers live only in this stage, for any dependency that ships no wheel.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The project's wheel and a wheel of every dependency, so that the final stage
# installs offline and needs no compiler.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels '.[otel]'

FROM ${PYTHON_IMAGE} AS merci
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 merci \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/merci --create-home \
      --shell /usr/sbin/nologin merci
# Bind-mount the wheels rather than COPY them, so they never become a layer. Versions are
# the ones built above (--no-index), so nothing here floats.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'merci[otel]' \
 && pip check
WORKDIR /home/merci
USER 10001:10001
# 8000: HTTP (/graphql, /healthz, /readyz, /metrics); 9191: a worker's Prometheus metrics.
EXPOSE 8000 9191
ENTRYPOINT ["merci"]
# `merci serve` listens on 127.0.0.1 by default; in a container it must listen on all interfaces.
CMD ["serve", "api", "--host", "0.0.0.0", "--port", "8000"]
