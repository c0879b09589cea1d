"""Worker and command-line peak memory (VmHWM / ru_maxrss) and CPU on worst-shaped CSV files (issue 11).

Not a test (figures are printed, never asserted): `.venv/bin/python -m tests.labwork.measure_csv_shapes`.
Each shape gets a fresh one-worker gunicorn on 127.0.0.1, so the worker's peak is that file's.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.ops.helpers import worker_pids
from tests.support.server import ROOT, gunicorn

HEADER = b"specimen_id,analyte,value,unit,comment\n"


def one_panel(size: int, quoted: bool) -> bytes:
    row = b'P,potassium,"4.0",mmol/L,x\n' if quoted else b"P,potassium,4.0,mmol/L,x\n"
    return HEADER + row * (size // len(row))


def panels(size: int) -> bytes:
    rows = b"".join(f"S{i},potassium,4.{i % 10},mmol/L,x\n".encode() for i in range(200_000))
    return HEADER + rows * max(1, size // len(rows))


def long_lines(size: int) -> bytes:
    """Panels of 200 rows (the limit), each row quoted and just under the 16,384-byte line limit."""
    row = b'P,potassium,4.0,mmol/L,"' + b"y" * 16_300 + b'"\n'
    return HEADER + b"".join(row.replace(b"P,", f"P{i // 200},".encode(), 1) for i in range(size // len(row)))


def many_fields(size: int) -> bytes:
    """Rows of 16,000 empty fields each (just under the line limit), 200 per panel."""
    row = b"P,potassium,4.0,mmol/L" + b"," * 16_300 + b"\n"
    return HEADER + b"".join(row.replace(b"P,", f"P{i // 200},".encode(), 1) for i in range(size // len(row)))


SHAPES: dict[str, Callable[[], bytes]] = {
    "3,000,000 columns (header)": lambda: b"specimen_id,analyte,value,unit" + b",c" * 3_000_000 + b"\n",
    "a row of 3,000,000 fields": lambda: HEADER + b"S,potassium,4.0,mmol/L" + b"," * 3_000_000 + b"\n",
    "one panel, 20 MB, quoted": lambda: one_panel(20_000_000, True),
    "one panel, 40 MB, quoted": lambda: one_panel(40_000_000, True),
    "one panel, 100 MB, plain": lambda: one_panel(100_000_000, False),
    "rows of 16,300 bytes, 40 MB": lambda: long_lines(40_000_000),
    "rows of 16,300 fields, 40 MB": lambda: many_fields(40_000_000),
    "200,000 panels, 40 MB (a normal file)": lambda: panels(40_000_000),
}


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmHWM")


def post(base: str, path: str) -> tuple[int, int]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    with open(path, "rb") as body:
        connection.request("POST", "/v1/interpret/csv", body=body, headers={"Content-Type": "text/csv"})
        response = connection.getresponse()
        size = 0
        while block := response.read(1 << 20):
            size += len(block)
    connection.close()
    return response.status, size


def worker(name: str, path: str) -> None:
    with gunicorn(workers=1, threads=4) as (base, process):
        (pid,) = worker_pids(process.pid)
        with tempfile.NamedTemporaryFile(suffix=".csv") as small:
            small.write(HEADER + b"S,potassium,4.0,mmol/L,x\n")
            small.flush()
            post(base, small.name)  # warm: the worker has answered once
        before = vm_hwm(pid)
        start = time.monotonic()
        status, size = post(base, path)
        print(f"worker | {name:40} | HTTP {status} | {size / 1e6:8.1f} MB out | peak {vm_hwm(pid):4d} MiB "
              f"(before {before} MiB) | {time.monotonic() - start:5.1f} s", flush=True)


MEASURED = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, check=False)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


def command_line(name: str, path: str) -> None:
    """In a parent of its own: RUSAGE_CHILDREN's peak is then this run's."""
    done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "labinterp.cli", "interpret", path,
                           "-o", os.devnull, "--no-progress"], cwd=ROOT, capture_output=True, text=True, check=True)
    code, cpu, peak = done.stdout.split()
    print(f"cli    | {name:40} | exit {code} | CPU {float(cpu):5.1f} s | peak {int(peak) // 1024:4d} MiB", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for size in (3.5, 7, 14):
            path = os.path.join(directory, "panel.csv")
            Path(path).write_bytes(one_panel(int(size * (1 << 20)), True))
            command_line(f"one panel, {size} MiB, quoted", path)
        for name, make in SHAPES.items():
            path = os.path.join(directory, "shape.csv")
            Path(path).write_bytes(make())
            command_line(name, path)
            worker(name, path)


if __name__ == "__main__":
    main()
