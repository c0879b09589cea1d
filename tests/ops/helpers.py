"""Helpers for the ops tests: apps with their own settings, gunicorn and nginx on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.server import ROOT, free_port, wait_until_up

# A panel of three analytes (the load run uses the same one).
PANEL: dict[str, Any] = {
    "results": [
        {"id": "ca", "analyte": "calcium", "value": 9.1, "unit": "mg/dL"},
        {"id": "mg", "analyte": "magnesium", "value": 0.62, "unit": "mmol/L"},
        {"id": "k", "analyte": "potassium", "value": 5.6, "unit": "mmol/L"},
    ],
    "specimen": "serum",
}


def make_app(**settings: Any):  # type: ignore[no-untyped-def]
    from labinterp.app import create_app

    return create_app({"TESTING": True, **settings})


def worker_pids(master: int) -> list[int]:
    """The pids of a gunicorn master's workers (its child processes)."""
    children = Path(f"/proc/{master}/task/{master}/children")
    if children.exists():
        return sorted(int(pid) for pid in children.read_text().split())
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def kill_instance(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a gunicorn we started: its workers, by pid, then the master."""
    for pid in worker_pids(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.kill()
    process.wait()


def port_refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_refused(port: int, attempts: int = 200) -> None:
    for _ in range(attempts):
        if port_refuses(port):
            return
        time.sleep(0.05)
    raise AssertionError(f"127.0.0.1:{port} still accepts connections")


def nginx_conf(prefix: Path, listen: str, upstreams: tuple[str, str]) -> str:
    """deploy/nginx/labinterp.conf with its @...@ placeholders filled in."""
    conf = (ROOT / "deploy" / "nginx" / "labinterp.conf").read_text()
    for name, value in {"@PREFIX@": str(prefix), "@LISTEN@": listen,
                        "@UPSTREAM_A@": upstreams[0], "@UPSTREAM_B@": upstreams[1]}.items():
        conf = conf.replace(name, value)
    assert not re.search(r"@[A-Z_]+@", conf), "a placeholder was left unfilled"
    return conf


@contextmanager
def nginx(prefix: Path, upstreams: tuple[str, str]) -> Iterator[str]:
    """Debian's nginx, unprivileged, with deploy/nginx/labinterp.conf. Yields its base URL."""
    port = free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)  # nginx workers may run as another user when the master is root
    (prefix / "nginx.conf").write_text(nginx_conf(prefix, f"127.0.0.1:{port}", upstreams))
    command = ["/usr/sbin/nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
               "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/healthz", process=process)
        yield base
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop of nginx
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post_json(base: str, path: str, body: Any, headers: Mapping[str, str] | None = None,
              timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
