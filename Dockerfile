# syntax=docker/dockerfile:1
#
# telerad: DICOM gateway + CT-perfusion stroke triage, as a CPU-only image.
#
#   docker build -t telerad .
#   docker run -p 11112:11112 -p 8080:8080 -v telerad-data:/var/lib/telerad \
#              -e TELERAD_SECRET_KEY="$(openssl rand -base64 48)" telerad
#
# The image runs in production mode: it refuses to start without a private secret_key
# (TELERAD_SECRET_KEY or secret_key in the config) and with dicom.accept_any_ae. Secrets kept in
# the index are sealed with a key derived from it (or TELERAD_SECRETS_KEY, a Fernet key): keep it
# stable across restarts and upgrades.
# Settings come from /etc/telerad/telerad.toml (mount your own) and TELERAD_* environment
# variables (nested with "__", e.g. TELERAD_DICOM__AE_TITLE). torch is an optional extra
# (telerad[torch]) and is deliberately NOT installed: the numpy backend is used.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependency layer: only pyproject.toml, so editing the source does not reinstall the
# dependencies. Only [project].dependencies are installed: no extras, so never torch.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install --upgrade pip setuptools wheel \
 && pip install -r /tmp/requirements.txt

# Application layer: the packages themselves, installed without touching dependencies.
COPY README.md ./
COPY telerad ./telerad
COPY pacs_gateway ./pacs_gateway
COPY triage ./triage
COPY models ./models
COPY viewer ./viewer
COPY sample_dicom ./sample_dicom
COPY stroke ./stroke
RUN pip install --no-deps --no-build-isolation . \
 && if pip show torch >/dev/null 2>&1; then echo "error: torch must not be in the image" >&2; exit 1; fi \
 && telerad --help >/dev/null

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="telerad" \
      org.opencontainers.image.description="Teleradiology gateway with automated CT-perfusion stroke triage" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 telerad \
 && useradd --system --uid 10001 --gid telerad --home-dir /var/lib/telerad --no-create-home \
            --shell /usr/sbin/nologin telerad \
 && mkdir -p /var/lib/telerad /etc/telerad \
 && printf '# telerad settings (TOML). Mount your own file here; see the README, "Configuration".\n' \
        > /etc/telerad/telerad.toml \
 && chown telerad:telerad /var/lib/telerad

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TELERAD_ENVIRONMENT=production \
    TELERAD_CONFIG=/etc/telerad/telerad.toml \
    TELERAD_DATA_DIR=/var/lib/telerad \
    TELERAD_DICOM__BIND=0.0.0.0 \
    TELERAD_DICOM__PORT=11112 \
    TELERAD_HTTP__BIND=0.0.0.0 \
    TELERAD_HTTP__PORT=8080

VOLUME ["/var/lib/telerad"]
EXPOSE 11112 8080

USER telerad
WORKDIR /var/lib/telerad

# No curl in the slim image: ask /healthz with the Python standard library, over HTTPS when
# TELERAD_HTTP__TLS_CERT is set (a loopback self-check: the certificate names the public host).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, ssl, sys, urllib.request; port = os.environ.get('TELERAD_HTTP__PORT', '8080'); tls = bool(os.environ.get('TELERAD_HTTP__TLS_CERT')); url = f'https://127.0.0.1:{port}/healthz' if tls else f'http://127.0.0.1:{port}/healthz'; sys.exit(0 if urllib.request.urlopen(url, timeout=4, context=ssl._create_unverified_context() if tls else None).status == 200 else 1)"]

CMD ["telerad", "serve", "--config", "/etc/telerad/telerad.toml"]
