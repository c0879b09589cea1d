"""End to end on a real gunicorn (127.0.0.1): a large CSV streamed through, HL7 and a batch."""

from __future__ import annotations

import csv
import http.client
import io
import json

import pytest

from tests.labwork.conftest import FILES, LABS
from tests.support.server import gunicorn

pytestmark = pytest.mark.e2e


def request(base: str, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_doors_on_gunicorn() -> None:
    rows = 60_000
    lines = ["specimen_id,analyte,value,unit,age_years,sex"]
    for i in range(rows // 3):
        lines += [f"S{i},calcium,{7.5 + (i % 30) / 10:.1f},mg/dL,60,F",
                  f"S{i},albumin,{3.0 + (i % 20) / 10:.1f},g/dL,60,F",
                  f"S{i},potassium,{3.0 + (i % 35) / 10:.1f},mmol/L,60,F"]
    body = ("\n".join(lines) + "\n").encode()
    env = {"LABINTERP_LABS_DIR": str(LABS), "LABINTERP_CSV_MAX_BYTES": str(10 * len(body))}
    with gunicorn(env=env, workers=1, threads=2) as (base, _):
        status, headers, data = request(base, "/v1/interpret/csv?lab=example-lab", body, "text/csv")
        assert status == 200 and headers["content-type"].startswith("text/csv")
        assert headers.get("transfer-encoding") == "chunked"  # streamed, not built in memory
        out = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
        derived = [r for r in out if r["analyte"] == "corrected_calcium"]
        assert len(out) == rows + len(derived) and len(derived) == rows // 3
        assert not any(r["error"] for r in out)

        status, headers, data = request(base, "/v1/hl7", (FILES / "oru_r01_crlf.hl7").read_bytes(),
                                        "application/hl7-v2")
        assert status == 200 and json.loads(data)["observations"][0]["outcome"] == "interpreted"

        batch = {"panels": [{"id": "a", "results": [{"analyte": "potassium", "value": 2.5, "unit": "mmol/L"}]},
                            {"id": "b", "results": [{"analyte": "potassium", "value": "x", "unit": "mmol/L"}]}]}
        status, _, data = request(base, "/v1/interpret/batch", json.dumps(batch).encode(), "application/json")
        answers = json.loads(data)["panels"]
        assert status == 200 and answers[0]["result"]["results"][0]["flag"] == "LL" and "error" in answers[1]


def test_labinterp_serve_runs_gunicorn() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.support.server import free_port, stop, wait_until_up

    port = free_port()
    script = Path(sys.executable).parent / "labinterp"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "labinterp.cli"]
    process = subprocess.Popen([*command, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                "--labs-dir", str(LABS)], env={**os.environ}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process=process)
        status, _, data = request(f"http://127.0.0.1:{port}", "/v1/interpret/batch", json.dumps(
            {"panels": [{"id": "a", "lab": "example-lab", "results": [
                {"analyte": "potassium", "value": 5.25, "unit": "mmol/L"}]}]}).encode(), "application/json")
        assert status == 200 and json.loads(data)["panels"][0]["result"]["laboratory"] == "example-lab"
    finally:
        stop(process)
    # the project's gunicorn.conf.py applies to `serve` too: every log line is JSON (no plain-text
    # gunicorn access log quoting request lines)
    lines = [line for line in process.stderr.read().decode().splitlines() if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines), lines[:5]
