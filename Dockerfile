# syntax=docker/dockerfile:1
#
# remoteit-proxy as a container: docker build -t remoteit-proxy:0.1.0 .
#
# Both stages use the same pinned image. Pin it further by digest where you can fetch one
# (python:3.12.11-slim-bookworm@sha256:...); tests/test_deploy.py accepts either form.

# --- build: the project's wheel, nothing else ------------------------------------------------
FROM python:3.12.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md LICENSE ./
COPY proxy/ proxy/
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- final: the wheel and its dependencies, no source tree -----------------------------------
FROM python:3.12.11-slim-bookworm
LABEL org.opencontainers.image.title="remoteit-proxy" \
      org.opencontainers.image.description="Signs requests to the Remote.It API with your access key" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed, numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 remoteit \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin remoteit

# The wheel is bind-mounted from the build stage for this one step: it never becomes a layer.
# Its dependencies (aiohttp, prometheus-client, and uvloop from the "fast" extra: a faster
# event loop) come from the index, within the ranges the wheel declares.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir "$(echo /wheels/*.whl)[fast]"

# Listen on the container's network. The proxy refuses to start on a non-loopback address
# without a token, and this image sets none: give one with REMOTEIT_PROXY_TOKEN_FILE (a mounted
# secret, preferred) or REMOTEIT_PROXY_TOKEN. Only on a network where everyone may use your
# Remote.It account, REMOTEIT_PROXY_ALLOW_UNAUTHENTICATED=true starts it without one.
# Credentials: the Remote.It credentials file mounted at the path below (a Docker secret named
# remoteit-credentials lands there), or R3_ACCESS_KEY_ID and R3_SECRET_ACCESS_KEY in the
# environment, which take precedence over the file.
# To change the port, set REMOTEIT_PROXY_LISTEN (the HEALTHCHECK reads its port from it).
ENV REMOTEIT_PROXY_LISTEN=0.0.0.0:8181 \
    REMOTEIT_PROXY_CREDENTIALS=/run/secrets/remoteit-credentials
EXPOSE 8181

USER 10001:10001

# /-/health answers without the token. The slim image has no curl, so: Python's urllib, with
# proxies disabled (an HTTP_PROXY set for the upstream must not capture 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('REMOTEIT_PROXY_LISTEN', ':8181').rpartition(':')[2]; u.build_opener(u.ProxyHandler({})).open(f'http://127.0.0.1:{port}/-/health', timeout=4)"]

# SIGTERM: stop accepting, let requests in flight finish (REMOTEIT_PROXY_SHUTDOWN_TIMEOUT), exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["remoteit-proxy"]
CMD ["serve"]
