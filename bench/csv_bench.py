"""CSV throughput and memory: `labinterp interpret` and POST /v1/interpret/csv against a baseline.

The baseline reads the same file with Python's csv module, converts each value to float and
writes each row back out unchanged. Prints values per second, the ratio of each path's time to
the baseline's (targets: ratio at most 2, at least 1,000,000 values/s), and peak memory (max RSS)
at 100,000 and 1,000,000 rows (target: the same at both sizes).
Run: .venv/bin/python bench/csv_bench.py [--rows 1000000] [--rounds 3] [--decimals 2]

Side by side in one run: each round runs the baseline, the command line and the HTTP endpoint in
turn on the same file, each writing a new output file (replacing a file just written costs ext4 a
forced allocation, which would fall on one side only); the medians of the rounds are compared.
The server is a real gunicorn on 127.0.0.1 only. Prints figures; asserts nothing. Wall-clock
ratios suffer when other work shares the machine: CPU-time ratios (user + system) are printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import random
import statistics
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
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
                  "max_rss_kb": usage.ru_maxrss}))
"""


def make_file(path: Path, rows: int, seed: int = 7, decimals: int = 2) -> None:
    """Panels of four results (calcium, albumin, magnesium, potassium), adults of both sexes; values
    with `decimals` decimals (2: values repeat, as in most laboratory files; 6: they almost never do)."""
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        f.write("specimen_id,analyte,value,unit,age_years,sex\n")
        lines = []
        for i in range(rows):
            panel, slot = divmod(i, len(PANEL))
            if slot == 0:
                age, sex = rng.randint(18, 95), rng.choice("FM")
            analyte, unit, low, high = PANEL[slot]
            lines.append(f"S{panel:08d},{analyte},{rng.uniform(low, high):.{decimals}f},{unit},{age},{sex}\n")
            if len(lines) == 10_000:
                f.writelines(lines)
                lines.clear()
        f.writelines(lines)


def measure(command: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def cli_command(source: Path, target: Path) -> list[str]:
    return [sys.executable, "-m", "labinterp.cli", "interpret", str(source), "-o", str(target), "--no-progress"]


def workers(master_pid: int) -> list[str]:
    return Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()


def worker_peak_kb(master_pid: int) -> int:
    """Largest VmHWM among the gunicorn master's worker processes."""
    peak = 0
    for child in workers(master_pid):
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak


def workers_cpu(master_pid: int) -> float:
    """CPU seconds (user + system) used so far by the master's workers."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for child in workers(master_pid):
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


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


def rounds(measured: list[dict[str, float]]) -> str:
    return ", ".join(f"{r['seconds']:.2f}" for r in measured)


def run_rounds(source: Path, work: Path, count: int, http: bool) -> dict[str, list[dict[str, float]]]:
    """Baseline, command line and HTTP in turn, `count` times; every run writes a new file."""
    from tests.support.server import gunicorn

    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "CLI": [], "HTTP": []}
    names = (work / f"out_{i}.csv" for i in itertools.count())
    with contextlib.ExitStack() as stack:
        if http:
            url, process = stack.enter_context(gunicorn(env={"LABINTERP_WORKERS": "1", "PYTHONPATH": str(ROOT)},
                                                        workers=1, threads=2))
        for _ in range(count):
            runs["baseline"].append(measure([sys.executable, "-c", BASELINE, str(source), str(next(names))]))
            output = next(names)
            cli = measure(cli_command(source, output))
            if cli["code"] not in (0, 1):
                raise RuntimeError(f"labinterp interpret exited {cli['code']}")
            runs["CLI"].append({**cli, "out_mb": output.stat().st_size / 1e6})
            if http:
                cpu_before = workers_cpu(process.pid)
                seconds = post_csv(url, source)
                runs["HTTP"].append({"seconds": seconds, "cpu": workers_cpu(process.pid) - cpu_before,
                                     "max_rss_kb": worker_peak_kb(process.pid)})
            for old in work.glob("out_*.csv"):
                old.unlink()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="size of the second memory measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decimals", type=int, default=2, help="decimals of the values (6: values never repeat)")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        figures: dict[str, object] = {"rows": args.rows, "rounds": args.rounds, "decimals": args.decimals}
        for rows in (args.small, args.rows):
            source = work / f"in_{rows}.csv"
            make_file(source, rows, decimals=args.decimals)
            runs = run_rounds(source, work, args.rounds, not args.no_http)
            base = {k: statistics.median(r[k] for r in runs["baseline"]) for k in ("seconds", "cpu")}
            print(f"{rows:>9,} rows  baseline {base['seconds']:.2f} s wall, {base['cpu']:.2f} s CPU "
                  f"({rows / base['seconds']:,.0f} values/s; peak "
                  f"{max(r['max_rss_kb'] for r in runs['baseline']) / 1024:.0f} MiB; "
                  f"rounds {rounds(runs['baseline'])} s)")
            if rows == args.rows:
                figures["baseline_values_per_s"] = round(rows / base["seconds"])
            for name in ("CLI", "HTTP"):
                measured = runs[name]
                if not measured:
                    continue
                seconds = statistics.median(r["seconds"] for r in measured)
                cpu = statistics.median(r["cpu"] for r in measured)
                # the CLI is a new process each round; the HTTP worker serves every round, so its first
                # request is the comparable figure and the high-water mark after all rounds is shown too
                peaks = [r["max_rss_kb"] / 1024 for r in measured]
                peak = peaks[0] if name == "HTTP" else max(peaks)
                later = ""
                if name == "HTTP" and len(peaks) > 1:
                    later = f" (after {len(peaks)} requests {peaks[-1]:.0f} MiB)"
                size = f"; output {measured[0]['out_mb']:.0f} MB" if "out_mb" in measured[0] else ""
                print(f"{rows:>9,} rows  {name:<8} {seconds:.2f} s wall, {cpu:.2f} s CPU "
                      f"({rows / seconds:,.0f} values/s; ratio {seconds / base['seconds']:.2f} wall, "
                      f"{cpu / base['cpu']:.2f} CPU; peak {peak:.0f} MiB{later}{size}; rounds {rounds(measured)} s)")
                key = name.lower()
                figures[f"{key}_peak_mib_{rows}"] = round(peak, 1)
                if rows == args.rows:
                    figures.update({f"{key}_values_per_s": round(rows / seconds),
                                    f"{key}_ratio_wall": round(seconds / base["seconds"], 2),
                                    f"{key}_ratio_cpu": round(cpu / base["cpu"], 2)})
        print(json.dumps(figures))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
