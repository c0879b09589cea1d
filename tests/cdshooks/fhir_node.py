"""Start the real FHIR server of tests/fhirserver (Medplum's FHIR router, in memory) on 127.0.0.1; a recorder."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import stop

FOLDER = Path(__file__).resolve().parents[1] / "fhirserver"


def installed() -> None:
    """node_modules as package-lock.json pins it (`make test` does this first; here for a bare pytest run)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (Debian packages nodejs and npm; `make test` installs them)")
    marker = FOLDER / "node_modules" / ".installed"
    if not marker.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=FOLDER, check=True,
                       timeout=600)
        marker.touch()


@contextmanager
def fhir_server(token: str | None = None, redirect_to: str | None = None,
                tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, str]]:
    """Yields (FHIR base URL, server root URL); over https when `tls` gives (key, certificate) PEM files.
    The node process is ended by its own pid."""
    installed()
    env = {k: v for k, v in os.environ.items() if k not in ("FHIR_TLS_KEY", "FHIR_TLS_CERT")}
    key, certificate = tls or (None, None)
    for name, value in (("FHIR_TOKEN", token), ("REDIRECT_TO", redirect_to), ("FHIR_TLS_KEY", key),
                        ("FHIR_TLS_CERT", certificate)):
        if value is not None:
            env[name] = str(value)
    process = subprocess.Popen(["node", "server.mjs", "0"], cwd=FOLDER, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        # the script prints its port once listening; a failed start prints its error and exits
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("listening "):
            rest = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"the FHIR server did not start: {line}{rest}")
        root = f"{'https' if tls else 'http'}://127.0.0.1:{int(line.split()[1])}"
        yield root + "/fhir", root
    finally:
        stop(process, timeout=10)
        if process.stdout:
            process.stdout.close()


def send(method: str, url: str, body: Any = None, token: str | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Recorder:
    """A plain HTTP listener on 127.0.0.1 that answers what it is told and records the headers it got:
    the 'other server' a redirect points to, and a server whose answers are not FHIR."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.answer: tuple[int, str, bytes] = (200, "application/fhir+json", b"{}")
        self.length = True  # False: no Content-Length, the body ends when the connection closes
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
                status, kind, body = recorder.answer
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if recorder.length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
