"""bench/load.py runs end to end (a short run: the 60-second run is `make bench-load`)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.server import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_short_load_run_has_no_errors_and_reports_p99_and_memory():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--duration", "2", "--warmup", "1",
                          "--connections", "8"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^errors: 0 ", out.stdout, re.M)
    assert re.search(r"p99 [\d.]+ ms", out.stdout)
    assert len(re.findall(r"^worker \d+ RSS: [\d.]+ MiB after warm-up, [\d.]+ MiB after the run", out.stdout,
                          re.M)) == 2
