"""Throughput of POST /v1/interpret (three-analyte panel) as a ratio to a bare Flask JSON echo.

Both are served by gunicorn with the project's gunicorn.conf.py settings, on 127.0.0.1, and loaded
with wrk in alternating turns within one run; the ratio of medians is printed. Not a test: nothing is
asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server import gunicorn  # noqa: E402

PANEL = {"results": [{"analyte": "calcium", "value": 8.1, "unit": "mg/dL"},
                     {"analyte": "magnesium", "value": 0.55, "unit": "mmol/L"},
                     {"analyte": "potassium", "value": 5.8, "unit": "mEq/L"}],
         "patient": {"age_years": 54, "sex": "female"}}


def wrk(url: str, body_file: str, seconds: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(ROOT / "bench/post.lua"), url],
                         env={**os.environ, "BODY_FILE": body_file}, capture_output=True, text=True, check=True)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses\n{out.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))


def cpu_seconds(master: int) -> float:
    """user + system CPU seconds of a gunicorn master's worker processes, from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package 'wrk')")
    with tempfile.TemporaryDirectory() as tmp:
        body_file = os.path.join(tmp, "panel.json")
        Path(body_file).write_text(json.dumps(PANEL))
        settings = {"workers": args.workers, "threads": args.threads}
        env = {"PYTHONPATH": str(ROOT)}
        service, echo, cpu_ratios = [], [], []
        with gunicorn(**settings) as (app_base, app_process), \
                gunicorn(app="bench.echo_app:app", env=env, **settings) as (echo_base, echo_process):
            wrk(app_base + "/v1/interpret", body_file, 2, args.connections)  # warm-up
            wrk(echo_base + "/echo", body_file, 2, args.connections)
            for turn in range(args.turns):
                before = cpu_seconds(app_process.pid)
                service.append(wrk(app_base + "/v1/interpret", body_file, args.seconds, args.connections))
                app_cpu = (cpu_seconds(app_process.pid) - before) / (service[-1] * args.seconds)
                before = cpu_seconds(echo_process.pid)
                echo.append(wrk(echo_base + "/echo", body_file, args.seconds, args.connections))
                echo_cpu = (cpu_seconds(echo_process.pid) - before) / (echo[-1] * args.seconds)
                cpu_ratios.append(echo_cpu / app_cpu)
                print(f"turn {turn + 1}: interpret {service[-1]:.0f} req/s ({app_cpu * 1e6:.0f} us CPU each), "
                      f"echo {echo[-1]:.0f} req/s ({echo_cpu * 1e6:.0f} us CPU each)", flush=True)
    ratio = statistics.median(service) / statistics.median(echo)
    print(f"gunicorn {args.workers} workers x {args.threads} threads, wrk {args.connections} connections, "
          f"{args.turns} turns of {args.seconds}s")
    print(f"POST /v1/interpret (3 analytes): median {statistics.median(service):.0f} req/s")
    print(f"bare Flask JSON echo:            median {statistics.median(echo):.0f} req/s")
    print(f"ratio interpret / echo: {ratio:.2f} (target >= 0.50)")
    print(f"per-turn ratios: {', '.join(f'{a / b:.2f}' for a, b in zip(service, echo, strict=True))}; "
          f"median {statistics.median(a / b for a, b in zip(service, echo, strict=True)):.2f}")
    print(f"CPU per request, echo / interpret (the workers' own, steadier on a shared machine): "
          f"median {statistics.median(cpu_ratios):.2f}")


if __name__ == "__main__":
    main()
