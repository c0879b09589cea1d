# labinterp: one stateless instance (gunicorn, gthread workers). Build: docker build -t labinterp .
# The base is pinned to an exact Python release on a named Debian release; pin its digest too
# (FROM python:3.11.14-slim-bookworm@sha256:...) in the registry you build from.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LABINTERP_BIND=0.0.0.0:8000 \
    LABINTERP_ENV=production \
    PROMETHEUS_MULTIPROC_DIR=/tmp/labinterp-metrics \
    PYTHONPATH=/app

WORKDIR /app
# Dependencies first (pinned), so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code runs from /app (not installed into site-packages): the embedded reference data is
# found beside the package, as in the source tree.
COPY wsgi.py gunicorn.conf.py ./
COPY labinterp ./labinterp
COPY reference_ranges ./reference_ranges
RUN groupadd --system --gid 10001 labinterp \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin labinterp \
    && mkdir -p /tmp/labinterp-metrics && chown 10001:10001 /tmp/labinterp-metrics

USER 10001:10001
EXPOSE 8000
# Liveness from inside the image (Kubernetes uses its own probes: deploy/kubernetes/).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# gunicorn is PID 1: SIGTERM stops accepting and lets in-flight requests finish (graceful_timeout).
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
