"""A real PostgreSQL on 127.0.0.1 for the tests: Debian's server, a fresh cluster in a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def server_bin(name: str) -> str | None:
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


@contextmanager
def postgres() -> Iterator[str]:
    """Start a throwaway cluster (as the postgres user when run as root: initdb refuses root); yield its URL.

    Stopped by its own pg_ctl (the server's pid is ours), the directory removed."""
    initdb, pg_ctl = server_bin("initdb"), server_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("Debian's postgresql is needed (scripts/system-packages.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="labinterp-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "timeout": 120}
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "labinterp", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], **run)  # type: ignore[call-overload]
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
                    f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off", "start"], **run)  # type: ignore[call-overload]
    try:
        url = f"postgresql://labinterp@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
