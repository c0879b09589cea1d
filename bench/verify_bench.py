"""Verification throughput and memory: `labinterp verify` against `labinterp interpret` on the same file.

The file has patient_id and collected_at (20 specimens of 4 results per patient on average, so the
delta and contamination rules have previous results to compare with). Prints rows per second, the ratio
of interpret's time to verify's (target: at least 0.5), CPU times, and peak memory (max RSS) of
verify at each size (target: flat from 100,000 to 1,000,000 rows).
Run: .venv/bin/python bench/verify_bench.py [--rows 100000 1000000]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PANEL = (("calcium", "mg/dL", 7.5, 11.5), ("albumin", "g/dL", 2.5, 5.0), ("magnesium", "mg/dL", 1.2, 2.8),
         ("potassium", "mmol/L", 3.0, 6.0))


def write_file(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    patients = max(1, rows // 80)
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


def run(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, max RSS in KiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    cli = [str(Path(sys.executable).parent / "labinterp")]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            source = Path(tmp) / f"in-{rows}.csv"
            write_file(source, rows)
            out = Path(tmp) / "out.csv"
            i_wall, i_cpu, _ = run([*cli, "interpret", str(source), "-o", str(out), "--no-progress"])
            os.remove(out)
            # max RSS of children is the largest so far: verify runs in a fresh interpreter for its own figure
            probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                     "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                     "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
            start = time.perf_counter()
            rss = subprocess.run([sys.executable, "-c", probe, *cli, "verify", str(source), "-o", str(out)],
                                 check=True, capture_output=True, text=True).stdout.strip()
            v_wall = time.perf_counter() - start
            print(f"{rows:>9,} rows: interpret {rows / i_wall:>10,.0f} rows/s ({i_wall:.1f} s, CPU {i_cpu:.1f} s); "
                  f"verify {rows / v_wall:>9,.0f} rows/s ({v_wall:.1f} s); ratio (verify/interpret throughput) "
                  f"{i_wall / v_wall:.2f}; verify max RSS {int(rss) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
