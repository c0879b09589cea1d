"""gunicorn settings used by `make run`, the Dockerfile and the tests (see docs/operations.md).

Override with LABINTERP_BIND, LABINTERP_WORKERS, LABINTERP_THREADS, LABINTERP_GRACEFUL_TIMEOUT.
"""

import os
import shutil
import tempfile
from pathlib import Path

# Metrics are multiprocess: the directory must be known before the app (and prometheus_client)
# is imported, which is why it is set here and not in the app. A deployer's directory is emptied
# at start (stale files from a previous run would add old counts); ours is removed at exit.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="labinterp-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
METRICS_DIR.mkdir(parents=True, exist_ok=True)  # e.g. inside an emptyDir mounted over /tmp

bind = os.environ.get("LABINTERP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LABINTERP_WORKERS", "2"))
threads = int(os.environ.get("LABINTERP_THREADS", "4"))
# Threads are safe: the engine keeps frozen unit factors and never calls pint per request.
# A gthread thread stays with a connection while its request arrives: a slow client holds one. Run
# behind a proxy that reads requests whole (deploy/kubernetes/nginx-pod.conf, deploy/nginx).
worker_class = "gthread"
# Load the app (and validate the reference data) once in the master: a bad data file stops
# start-up before any worker is forked.
preload_app = True
# SIGTERM: stop accepting, let in-flight requests finish for up to this many seconds.
graceful_timeout = int(os.environ.get("LABINTERP_GRACEFUL_TIMEOUT", "30"))
timeout = 30
keepalive = 5
# Request line and header limits (bodies are limited by LABINTERP_MAX_BODY_BYTES in the app).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# The app writes one JSON access line per request, with the request id and the route template
# (never the raw path or query): gunicorn's own access log is off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LABINTERP_LOG_LEVEL", "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "labinterp.ops.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
    },
}
proc_name = "labinterp"
# No control socket: nothing here uses gunicornc, and two instances on one host would share its path.
control_socket_disable = True


def _strip_server_banner():
    # Patched on the class, so gunicorn's own error pages (400, 431...) lose the banner too.
    from gunicorn.http import wsgi

    default_headers = wsgi.Response.default_headers

    def without_server(self):
        return [line for line in default_headers(self) if not line.lower().startswith("server:")]

    wsgi.Response.default_headers = without_server


# No "Server: gunicorn" banner.
_strip_server_banner()


def on_starting(server):
    if not _OWN_METRICS_DIR:
        for stale in METRICS_DIR.glob("*.db"):
            stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
