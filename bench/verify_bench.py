"""Verification throughput and memory: `labinterp verify` against `labinterp interpret` on the same file.

The file has patient_id and collected_at: specimens of 4 results (calcium, albumin, magnesium, potassium)
of a fixed number of patients (--patients, default 12,500: 20 specimens each at 1,000,000 rows), so the
delta and contamination rules have previous results to compare with and memory, bounded by patients,
should not grow with rows. At each size (default 100,000 and 1,000,000 rows) prints rows per second of
both, the ratio of verify's throughput to interpret's (wall and CPU; target: at least 0.5), and the peak
memory (max RSS) of each (target: flat from 100,000 to 1,000,000 rows). Each command runs in a fresh
interpreter for its own figures. Run: .venv/bin/python bench/verify_bench.py [--rows 100000 1000000]

With --instructions, each command instead runs under valgrind's callgrind (every thread counted), on the
file and on the same header with no rows: the ratio of the instructions per row (start-up taken out) is
steadier than seconds on a shared machine. About fifty times slower: use it at 100,000 or 300,000 rows.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PANEL = (("calcium", "mg/dL", 7.5, 11.5), ("albumin", "g/dL", 2.5, 5.0), ("magnesium", "mg/dL", 1.2, 2.8),
         ("potassium", "mmol/L", 3.0, 6.0))
PATIENTS = 12_500
# runs a command in a child and prints its CPU seconds and max RSS (KiB): each figure is that command's alone
PROBE = ("import json, resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
         "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); u = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print(json.dumps([u.ru_utime + u.ru_stime, u.ru_maxrss]))")


def write_file(path: Path, rows: int, seed: int = 1, patients: int = PATIENTS) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as out:
        out.write("patient_id,specimen_id,analyte,value,unit,collected_at\r\n")
        written = specimen = 0
        while written < rows:
            specimen += 1
            patient = f"P{rng.randrange(patients)}"
            when = f"2026-03-{1 + specimen * 7 % 28:02d}T{specimen % 24:02d}:00:00Z"
            for analyte, unit, low, high in PANEL:
                out.write(f"{patient},S{specimen},{analyte},{round(rng.uniform(low, high), 2)},{unit},{when}\r\n")
                written += 1


def run(command: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, max RSS in MiB) of one command, in a fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE, *command], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    cpu, rss = json.loads(out.stdout)
    return wall, cpu, rss / 1024


def instructions(command: list[str], tmp: Path) -> int:
    """The instructions one command executes (all its threads), counted by callgrind."""
    out = tmp / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command], check=True,
                   capture_output=True)
    found = re.search(r"^(?:totals|summary):\s+(\d+)", out.read_text(errors="replace"), re.M)
    assert found, "no totals in callgrind output"
    out.unlink()
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--patients", type=int, default=PATIENTS)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    args = parser.parse_args()
    cli = [str(Path(sys.executable).parent / "labinterp")]
    if args.instructions:
        with tempfile.TemporaryDirectory() as tmp:
            empty, out = Path(tmp) / "empty.csv", Path(tmp) / "out.csv"
            write_file(empty, 0)
            base = {name: instructions([*cli, name, str(empty), "-o", str(out), *extra], Path(tmp))
                    for name, extra in (("interpret", ["--no-progress"]), ("verify", []))}
            for rows in args.rows:
                source = Path(tmp) / f"in-{rows}.csv"
                write_file(source, rows, patients=args.patients)
                per_row = {name: (instructions([*cli, name, str(source), "-o", str(out), *extra], Path(tmp))
                                  - base[name]) / rows
                           for name, extra in (("interpret", ["--no-progress"]), ("verify", []))}
                print(f"{rows:>9,} rows, {args.patients:,} patients: instructions per row interpret "
                      f"{per_row['interpret']:,.0f}, verify {per_row['verify']:,.0f} (start-up: {base['interpret']:,} "
                      f"and {base['verify']:,}); ratio verify/interpret throughput "
                      f"{per_row['interpret'] / per_row['verify']:.2f}", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            source, out = Path(tmp) / f"in-{rows}.csv", Path(tmp) / "out.csv"
            write_file(source, rows, patients=args.patients)
            i_wall, i_cpu, i_rss = run([*cli, "interpret", str(source), "-o", str(out), "--no-progress"])
            v_wall, v_cpu, v_rss = run([*cli, "verify", str(source), "-o", str(out)])
            out.unlink()
            print(f"{rows:>9,} rows, {args.patients:,} patients: interpret {rows / i_wall:>9,.0f} rows/s "
                  f"({i_wall:.1f} s, CPU {i_cpu:.1f} s, max RSS {i_rss:.0f} MiB); verify {rows / v_wall:>9,.0f} rows/s "
                  f"({v_wall:.1f} s, CPU {v_cpu:.1f} s, max RSS {v_rss:.0f} MiB); ratio verify/interpret throughput "
                  f"{i_wall / v_wall:.2f} wall, {i_cpu / v_cpu:.2f} CPU", flush=True)


if __name__ == "__main__":
    main()
