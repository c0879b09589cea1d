"""Run every benchmark in turn (`make bench`): each prints its own figures; nothing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["request_parts.py", "interpret_vs_echo.py", "verify_vs_interpret.py", "csv_bench.py", "verify_bench.py",
              "load.py"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"==> bench/{name}", flush=True)
        subprocess.run([sys.executable, str(HERE / name), *sys.argv[1:]], check=True)
