"""Throughput of POST /v1/verify as a ratio to POST /v1/interpret, on the same three-analyte panel.

The verify body is the interpret body (bench/interpret_vs_echo.py's PANEL) plus collected_at and one
previous result per analyte (so the delta and contamination rules compare). One gunicorn with the
project's gunicorn.conf.py settings on 127.0.0.1, loaded with wrk (bench/interpret_vs_echo.py's) in
alternating turns; the ratio of medians is printed. Not a test: nothing is asserted about time.
Run: .venv/bin/python bench/verify_vs_interpret.py [--seconds 10 --turns 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interpret_vs_echo import PANEL, wrk  # noqa: E402  (the same panel, the same wrk run)
from tests.support.server import gunicorn  # noqa: E402

VERIFY = {**PANEL, "collected_at": "2026-03-02T08:00:00Z",
          "previous": [{**result, "collected_at": "2026-03-01T08:00:00Z"} for result in PANEL["results"]]}


def check(url: str, body: dict) -> None:
    """One request first: the answer is complete (a refused body would measure the error path)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        answer = json.loads(response.read())
    assert len(answer["results"]) == len(PANEL["results"]), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package 'wrk')")
    with tempfile.TemporaryDirectory() as tmp:
        interpret_body, verify_body = os.path.join(tmp, "panel.json"), os.path.join(tmp, "verify.json")
        Path(interpret_body).write_text(json.dumps(PANEL))
        Path(verify_body).write_text(json.dumps(VERIFY))
        interpret, verify = [], []
        with gunicorn(workers=args.workers, threads=args.threads) as (base, _):
            check(base + "/v1/interpret", PANEL)
            check(base + "/v1/verify", VERIFY)
            wrk(base + "/v1/interpret", interpret_body, 2, args.connections)  # warm-up
            wrk(base + "/v1/verify", verify_body, 2, args.connections)
            for turn in range(args.turns):
                interpret.append(wrk(base + "/v1/interpret", interpret_body, args.seconds, args.connections))
                verify.append(wrk(base + "/v1/verify", verify_body, args.seconds, args.connections))
                print(f"turn {turn + 1}: interpret {interpret[-1]:.0f} req/s, verify {verify[-1]:.0f} req/s",
                      flush=True)
    print(f"gunicorn {args.workers} workers x {args.threads} threads, wrk {args.connections} connections, "
          f"{args.turns} turns of {args.seconds}s")
    print(f"POST /v1/interpret (3 analytes):                    median {statistics.median(interpret):.0f} req/s")
    print(f"POST /v1/verify (the same, collected_at, 3 previous): median {statistics.median(verify):.0f} req/s")
    print(f"ratio verify / interpret: {statistics.median(verify) / statistics.median(interpret):.2f}")


if __name__ == "__main__":
    main()
