"""CSV throughput and memory: `labinterp interpret` and POST /v1/interpret/csv against a baseline.

The baseline reads the same file with Python's csv module, converts each value to float and
writes each row back out unchanged. Prints values per second, the ratio of each path's time to
the baseline's (target: at most 2), and peak memory (max RSS) at 100,000 and 1,000,000 rows
(target: the same at both sizes). Run: .venv/bin/python bench/csv_bench.py [--rows 1000000]
The server is a real gunicorn on 127.0.0.1 only. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PANEL = (("calcium", "mg/dL", 7.5, 11.5), ("albumin", "g/dL", 2.5, 5.0), ("magnesium", "mg/dL", 1.2, 2.8),
         ("potassium", "mmol/L", 3.0, 6.0))

BASELINE = """
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f, open(sys.argv[2], "w", newline="") as o:
    reader = csv.reader(f)
    writer = csv.writer(o)
    header = next(reader)
    writer.writerow(header)
    column = header.index("value")
    for row in reader:
        float(row[column])
        writer.writerow(row)
"""

# Runs a command as a child and prints its peak RSS (kB) and wall time: one fresh measurer per run,
# so RUSAGE_CHILDREN holds that one child only.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
seconds = time.perf_counter() - start
print(json.dumps({"code": code, "seconds": seconds,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def make_file(path: Path, rows: int, seed: int = 7) -> None:
    """Panels of four results (calcium, albumin, magnesium, potassium), adults of both sexes."""
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        f.write("specimen_id,analyte,value,unit,age_years,sex\n")
        lines = []
        for i in range(rows):
            panel, slot = divmod(i, len(PANEL))
            if slot == 0:
                age, sex = rng.randint(18, 95), rng.choice("FM")
            analyte, unit, low, high = PANEL[slot]
            lines.append(f"S{panel:08d},{analyte},{rng.uniform(low, high):.2f},{unit},{age},{sex}\n")
            if len(lines) == 10_000:
                f.writelines(lines)
                lines.clear()
        f.writelines(lines)


def measure(command: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def cli_command(source: Path, target: Path) -> list[str]:
    return [sys.executable, "-m", "labinterp.cli", "interpret", str(source), "-o", str(target), "--no-progress"]


def worker_peak_kb(master_pid: int) -> int:
    """Largest VmHWM among the gunicorn master's worker processes."""
    peak = 0
    for child in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak


def post_csv(base: str, source: Path) -> float:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    size = source.stat().st_size
    start = time.perf_counter()
    with source.open("rb") as body:
        connection.request("POST", "/v1/interpret/csv", body=body,
                           headers={"Content-Type": "text/csv", "Content-Length": str(size)})
        response = connection.getresponse()
        while response.read(1 << 20):
            pass
    seconds = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    connection.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="size of the second memory measurement")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    from tests.support.server import gunicorn

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        figures: dict[str, object] = {"rows": args.rows}
        for rows in (args.small, args.rows):
            source, target = work / f"in_{rows}.csv", work / f"out_{rows}.csv"
            make_file(source, rows)
            base = measure([sys.executable, "-c", BASELINE, str(source), str(target)])
            cli = measure(cli_command(source, target))
            if cli["code"] not in (0, 1):
                raise RuntimeError(f"labinterp interpret exited {cli['code']}")
            print(f"{rows:>9,} rows  baseline {base['seconds']:.2f} s ({rows / base['seconds']:,.0f} values/s, "
                  f"peak {base['max_rss_kb'] / 1024:.0f} MiB)")
            print(f"{rows:>9,} rows  CLI      {cli['seconds']:.2f} s ({rows / cli['seconds']:,.0f} values/s, "
                  f"ratio {cli['seconds'] / base['seconds']:.2f}, peak {cli['max_rss_kb'] / 1024:.0f} MiB)")
            figures[f"cli_peak_mib_{rows}"] = round(cli["max_rss_kb"] / 1024, 1)
            if rows == args.rows:
                figures.update(baseline_values_per_s=round(rows / base["seconds"]),
                               cli_values_per_s=round(rows / cli["seconds"]),
                               cli_ratio=round(cli["seconds"] / base["seconds"], 2))
            if not args.no_http:
                env = {"LABINTERP_WORKERS": "1", "PYTHONPATH": str(ROOT)}
                with gunicorn(env=env, workers=1, threads=2) as (url, process):
                    seconds = post_csv(url, source)
                    peak = worker_peak_kb(process.pid)
                print(f"{rows:>9,} rows  HTTP     {seconds:.2f} s ({rows / seconds:,.0f} values/s, "
                      f"ratio {seconds / base['seconds']:.2f}, worker peak {peak / 1024:.0f} MiB)")
                figures[f"http_peak_mib_{rows}"] = round(peak / 1024, 1)
                if rows == args.rows:
                    figures.update(http_values_per_s=round(rows / seconds),
                                   http_ratio=round(seconds / base["seconds"], 2))
        print(json.dumps(figures))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
