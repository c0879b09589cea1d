"""The slow-client probe of issue 11 (loopback only, bounded) and the pod's nginx, run on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import ROOT, free_port, wait_until_up

POD_CONF = ROOT / "deploy" / "kubernetes" / "nginx-pod.conf"


def pod_nginx_conf(prefix: Path, listen_port: int, upstream: str) -> str:
    """deploy/kubernetes/nginx-pod.conf as shipped, with only its port, upstream and /tmp/nginx moved."""
    conf = POD_CONF.read_text()
    for old, new in (("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
                     ("server 127.0.0.1:8000;", f"server {upstream};"), ("/tmp/nginx", str(prefix))):
        assert conf.count(old) >= 1, old
        conf = conf.replace(old, new)
    return conf


@contextmanager
def pod_nginx(prefix: Path, upstream: str) -> Iterator[str]:
    """The pod's nginx, unprivileged, in front of `upstream`. Yields its base URL; stopped by its pid."""
    port = free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    (prefix / "nginx.conf").write_text(pod_nginx_conf(prefix, port, upstream))
    process = subprocess.Popen(["/usr/sbin/nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/healthz", process=process)
        yield base
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _slow_client(port: int, stop: threading.Event, interval: float) -> None:
    """One connection sending a request head one header line every `interval` seconds until `stop`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /v1/interpret HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            line = 0
            while not stop.wait(interval) and line < 1000:
                line += 1
                sock.sendall(f"X-Slow-{line}: x\r\n".encode())
    except OSError:
        pass  # the server (or proxy) gave up on us: that is its right


def health_under_slow_clients(base: str, connections: int = 8, checks: int = 13, every: float = 2.0,
                              interval: float = 2.0, check_timeout: float = 2.0) -> int:
    """How many of `checks` GET /healthz (one every `every` s, each allowed `check_timeout` s, as a
    Kubernetes probe) succeed while `connections` slow clients each send a header line every
    `interval` s. Bounded: about checks x every seconds, then every slow client is closed."""
    port = int(base.rsplit(":", 1)[1])
    stop = threading.Event()
    clients = [threading.Thread(target=_slow_client, args=(port, stop, interval), daemon=True)
               for _ in range(connections)]
    for client in clients:
        client.start()
    passed = 0
    try:
        time.sleep(1.0)  # let every slow client be accepted first
        for _ in range(checks):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=check_timeout) as response:  # noqa: S310
                    passed += response.status == 200
            except OSError:
                pass
            time.sleep(max(0.0, every - (time.monotonic() - started)))
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    return passed
