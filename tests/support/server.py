"""Start a real gunicorn on 127.0.0.1 for end-to-end tests, and stop it by its pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """End a server we started, by its own pid: SIGTERM (graceful), then SIGKILL after `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def gunicorn(env: Mapping[str, str] | None = None, workers: int = 2, threads: int = 4,
             app: str = "wsgi:app", extra_args: tuple[str, ...] = (),
             log_path: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yields (base_url, process). The process is ended by its own pid, gracefully (SIGTERM)."""
    port = free_port()
    environment = {**os.environ, **(env or {})}
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
               "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
               *extra_args, app]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/healthz", process=process)
        yield base, process
    finally:
        stop(process)
        if log_path:
            log.close()  # type: ignore[union-attr]
