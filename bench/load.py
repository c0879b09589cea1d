"""Load run: wrk against POST /v1/interpret (three-analyte panel) on a real gunicorn on 127.0.0.1.

Default: 60 seconds at 64 connections (the issue's figures). Prints requests/s, latency percentiles
(p50, p90, p99, max), every kind of error wrk counts, and the resident memory (RSS) of each gunicorn
worker after warm-up and after the run. Exits 1 when any request failed (an error is a defect, not a
figure); nothing is asserted about time. Run: .venv/bin/python bench/load.py [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interpret_vs_echo import PANEL  # noqa: E402  (the same three-analyte panel)
from tests.ops.helpers import worker_pids  # noqa: E402
from tests.support.server import gunicorn  # noqa: E402

# post.lua sets the method, headers and body; done() prints wrk's own counts as one JSON line.
SUMMARY_LUA = """
dofile(%(post)s)
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def run_wrk(url: str, script: Path, body_file: Path, seconds: int, connections: int, threads: int) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(script), url],
                         env={**os.environ, "BODY_FILE": str(body_file)}, capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRK_JSON "))
    figures = json.loads(line[len("WRK_JSON "):])
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2, as gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up before the first RSS reading")
    parser.add_argument("--rounds", type=int, default=1, help="load runs in a row on the same server; RSS is "
                        "read after each, to tell growth from a plateau (default 1)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package 'wrk')")
    loads, rss = [], []
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "panel.json"
        body_file.write_text(json.dumps(PANEL))
        script = Path(tmp) / "load.lua"
        script.write_text(SUMMARY_LUA % {"post": json.dumps(str(ROOT / "bench" / "post.lua"))})
        with gunicorn(workers=args.workers, threads=args.threads) as (base, process):
            url = base + "/v1/interpret"
            request = urllib.request.Request(url, data=body_file.read_bytes(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
                assert len(json.loads(response.read())["results"]) == 3
            warm = run_wrk(url, script, body_file, args.warmup, args.connections, args.wrk_threads)
            pids = worker_pids(process.pid)
            rss.append({pid: rss_mib(pid) for pid in pids})
            for _ in range(args.rounds):
                loads.append(run_wrk(url, script, body_file, args.duration, args.connections, args.wrk_threads))
                rss.append({pid: rss_mib(pid) for pid in pids if Path(f"/proc/{pid}").exists()})
    print(f"load: POST /v1/interpret, 3 analytes; gunicorn {args.workers} workers x {args.threads} threads; "
          f"wrk {args.wrk_threads} threads, {args.connections} connections, {args.duration}s on 127.0.0.1")
    for number, load in enumerate(loads, 1):
        label = f"round {number}: " if args.rounds > 1 else ""
        print(f"{label}requests: {load['requests']}  ({load['rps']:.0f} req/s)")
        print(f"{label}latency: p50 {load['p50_us'] / 1000:.1f} ms, p90 {load['p90_us'] / 1000:.1f} ms, "
              f"p99 {load['p99_us'] / 1000:.1f} ms, max {load['max_us'] / 1000:.1f} ms")
        print(f"{label}errors: {load['errors']} (connect {load['connect']}, read {load['read']}, write "
              f"{load['write']}, non-2xx {load['status']}, timeout {load['timeout']})")
    print(f"warm-up errors: {warm['errors']}")
    before, after = rss[0], rss[-1]
    for pid in pids:
        if pid in after:
            growth = after[pid] - before[pid]
            rounds = ", ".join(f"{reading[pid]:.1f}" for reading in rss[1:] if pid in reading)
            print(f"worker {pid} RSS: {before[pid]:.1f} MiB after warm-up, {after[pid]:.1f} MiB after the run "
                  f"({growth:+.1f} MiB, {100 * growth / before[pid]:+.1f} %)"
                  + (f"; after each round: {rounds} MiB" if args.rounds > 1 else ""))
        else:
            print(f"worker {pid}: restarted during the run (RSS not comparable)")
    failed = any(load["errors"] for load in loads) or warm["errors"] or len(after) != len(pids)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
