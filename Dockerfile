# syntax=docker/dockerfile:1
# The crawler's image (also runs the pipeline exporter: `python -m exporters.pipeline`).
# Multi-arch: linux/amd64, linux/arm64 and linux/arm/v7 (Raspberry Pi 3 on a 32-bit OS):
#   docker buildx build --platform linux/arm64,linux/arm/v7 -t pi-crawler:0.1.0 .
#
# Build stage: compilers and headers, because armv7 has no binary psycopg wheel
# (psycopg-binary ships none for 32-bit ARM) and some dependencies may have to
# be compiled there. Runtime stage: the virtualenv, libpq and nothing else.

# Pinned by tag and by digest (the multi-platform index), so a re-pushed tag
# cannot change what is built.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
# Debian package versions are not pinned (DL3008): the pinned base image fixes
# the release, and a pinned point version disappears with the next security fix.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential libpq-dev libxml2-dev libxslt1-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY crawler ./crawler
COPY exporters ./exporters
# Every dependency from requirements.lock (scripts/lock), each file checked
# against its SHA-256: a changed or substituted package stops the build. It
# includes psycopg[c], the C implementation, compiled here against libpq-dev on
# every architecture alike; the runtime only needs libpq5. Then the project
# itself without dependencies, and `pip check` fails the build if the lock
# misses one. (Build-only requirements of source packages, such as setuptools,
# come from pip's isolated build environment, which pip does not hash-check.)
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock \
 && /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import psycopg; assert psycopg.pq.__impl__ == 'c', psycopg.pq.__impl__"

FROM ${PYTHON_IMAGE} AS runtime
# libpq5: the PostgreSQL client library psycopg loads. libxml2/libxslt1.1:
# only used if lxml had to be compiled from source on this architecture.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libxml2 libxslt1.1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 crawler \
 && useradd --system --uid 10001 --gid crawler --home-dir /var/lib/crawler --shell /usr/sbin/nologin crawler \
 && mkdir -p /var/lib/crawler /etc/crawler \
 && chown crawler:crawler /var/lib/crawler
COPY --from=build /opt/venv /opt/venv
# The exporters package is imported from the venv, so any working directory does.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/crawler
# The state volume is created from this directory, so it inherits the owner.
VOLUME ["/var/lib/crawler"]
# Numeric, so Kubernetes' runAsNonRoot and similar checks can verify it.
USER 10001:10001
EXPOSE 9410 9411
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9410/healthz', timeout=4)"]
# No ENTRYPOINT, so compose can run `python -m exporters.pipeline` from the same image.
CMD ["crawler", "run", "-c", "/etc/crawler/crawler.yaml"]
