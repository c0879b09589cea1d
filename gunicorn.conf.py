"""gunicorn settings used by `make run` (override with LABINTERP_BIND, LABINTERP_WORKERS, LABINTERP_THREADS)."""

import os

bind = os.environ.get("LABINTERP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LABINTERP_WORKERS", "2"))
threads = int(os.environ.get("LABINTERP_THREADS", "4"))
worker_class = "gthread"
# Load the app (and validate the reference data) once in the master: a bad data file stops
# start-up before any worker is forked.
preload_app = True
graceful_timeout = 30
timeout = 30
keepalive = 5
# Access log: method, path and status only (no query string, no bodies: no patient data).
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
