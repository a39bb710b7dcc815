# immunorad: one image for every role.
#
#   DOCKER_BUILDKIT=1 docker build -t immunorad .
#   docker run -p 8080:8080 -p 11112:11112 immunorad        # `immunorad serve`: all roles, embedded SQLite
#   docker run immunorad api | dicom | worker | migrate      # one role, as the Helm chart runs it
#
# The role is the argument: ENTRYPOINT is `immunorad`, CMD defaults to `serve` (contract §1).
#
# durable-rules 2.0.28 is published only as an sdist with a C extension, so it is compiled in the
# builder stage (gcc + libc headers; the Python headers come with the base image; cmake is not needed).
# The runtime stage receives the finished virtualenv and carries no compiler.
# Both stages use the same base image so the extension runs against the glibc and libpython it was
# built with. bookworm is chosen over trixie because its gcc 12 is the toolchain the extension is
# built with on the project's development machines.
#
# Build arguments and secrets:
#   BASE_IMAGE  a Debian bookworm image with Python 3.11 (default the official slim image). Without a
#               registry, any local bookworm root file system with python3, python3-venv and python3-pip
#               works, e.g. one made with debootstrap and `docker import` (tests/ops/test_container.py does
#               this). The builder adds the Python headers (python3-dev) when the base lacks them.
#   secret `ca` an extra CA bundle (PEM) for pip, for networks whose proxy re-signs TLS:
#               DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/path/to/proxy-ca.pem -t immunorad .
#               pip then trusts its own bundle plus this one. The secret is mounted for that one RUN only
#               and never stored in a layer. Builds without it trust pip's bundle alone.
# No `# syntax=` line: BuildKit would pull that frontend image from a registry; the builtin frontend of
# Docker 20.10+ supports RUN --mount=type=secret.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder

# Debian package versions are not pinned: the base image tag fixes the Debian release, and exact
# versions disappear from the archive with every security update, which would break rebuilds.
# The official image carries Python's headers in /usr/local; Debian's python3 needs python3-dev for them
# (the unquoted $(...) is deliberate: it expands to nothing or to that one package name).
# hadolint ignore=DL3008,SC2046
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
       $(python3 -c "import os, sysconfig; print('' if os.path.exists(sysconfig.get_paths()['include'] + '/Python.h') else 'python3-dev')") \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The venv path is the same in both stages: its scripts carry absolute shebangs.
RUN python3 -m venv /opt/immunorad
ENV PATH=/opt/immunorad/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY rules ./rules
COPY fhir_mappings ./fhir_mappings
COPY dicom_listener ./dicom_listener
# A plain (non-editable) install: the runtime stage needs the venv only, not /src.
# Importing the rule engine here fails the build, not the first pod, if the extension did not compile.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then \
        cat "$(python -c 'import pip._vendor.certifi as c; print(c.where())')" /run/secrets/ca > /tmp/pip-ca.pem \
        && export PIP_CERT=/tmp/pip-ca.pem; \
    fi \
    && pip install --no-cache-dir . \
    && rm -f /tmp/pip-ca.pem \
    && python -c "import durable.lang, durable_rules_engine" \
    && immunorad --help > /dev/null


FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="immunorad" \
      org.opencontainers.image.description="Imaging response assessment for cancer immunotherapy: FHIR API, DICOM C-STORE listener, worker" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini is PID 1: it forwards SIGTERM to immunorad and reaps the processes `serve` starts.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 immunorad \
    && useradd --system --uid 10001 --gid immunorad --home-dir /srv/immunorad \
       --no-create-home --shell /usr/sbin/nologin immunorad \
    && install -d -o immunorad -g immunorad -m 0750 /srv/immunorad /srv/immunorad/var

COPY --from=builder /opt/immunorad /opt/immunorad

# Containers listen on all interfaces (contract §2 defaults to loopback for a developer's machine).
# The working directory holds the relative default `var/` (SQLite and the generated API token under
# `serve`); in Kubernetes the chart points IMMUNORAD_VAR_DIR at an emptyDir and state is in PostgreSQL.
# IMMUNORAD_ROLE_HTTP_PORT (/healthz, /readyz, /metrics of the dicom and worker roles) keeps the
# application's default, off; the Helm chart sets 8081. Logs are JSON lines on stderr (IMMUNORAD_LOG_FORMAT=json),
# where the container runtime collects them; a terminal's default, `human`, writes them to var/log/ instead. Under plain Docker, run those roles with
# `-e IMMUNORAD_ROLE_HTTP_PORT=8081` to give them a health check.
ENV PATH=/opt/immunorad/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMMUNORAD_HTTP_HOST=0.0.0.0 \
    IMMUNORAD_HTTP_PORT=8080 \
    IMMUNORAD_DICOM_HOST=0.0.0.0 \
    IMMUNORAD_DICOM_PORT=11112 \
    IMMUNORAD_VAR_DIR=/srv/immunorad/var \
    IMMUNORAD_LOG_FORMAT=json

WORKDIR /srv/immunorad
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8080 8081 11112

# Liveness for `docker run`: the role's HTTP port must answer /healthz with 2xx — 8080 for serve/api,
# IMMUNORAD_ROLE_HTTP_PORT for dicom/worker. Kubernetes ignores this and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request\nports = (os.environ.get('IMMUNORAD_HTTP_PORT') or '8080', os.environ.get('IMMUNORAD_ROLE_HTTP_PORT') or '0')\nfor port in ports:\n    if port == '0':\n        continue\n    try:\n        urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)\n        sys.exit(0)\n    except Exception:\n        pass\nsys.exit(1)"]

ENTRYPOINT ["tini", "--", "immunorad"]
CMD ["serve"]
