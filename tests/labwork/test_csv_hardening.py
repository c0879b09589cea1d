"""Issue 11, CSV: long fields (defect 2), unbalanced quotes (3), cost and memory bounds (6), the upload spool (7),
on the command line and the HTTP door, through a real gunicorn where framing and streaming matter."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import labinterp.files.csvfile as csvfile
from labinterp.core import Engine
from labinterp.core.columnar import ColumnarInterpreter
from labinterp.files.csvfile import CsvJob, CsvLimits
from tests.labwork.conftest import ROOT
from tests.support.server import free_port, gunicorn, stop, wait_until_up

HEADER = b"specimen_id,analyte,value,unit,comment\n"
# the example: a comment opens a quote it never closes, then two critical potassium results
UNBALANCED = HEADER + b'S1,calcium,9.2,mg/dL,"5 mL tube\nS2,potassium,6.9,mmol/L,\nS3,potassium,2.1,mmol/L,\n'
SMALL = CsvLimits(max_line_bytes=1000, max_columns=20, max_panel_rows=50)


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def run(engine: Engine, data: bytes, block_bytes: int = 1 << 18, limits: CsvLimits | None = None) -> list[dict]:
    return rows_of(b"".join(CsvJob(ColumnarInterpreter(engine), io.BytesIO(data), block_bytes, limits=limits)))


def cli(tmp_path: Path, data: bytes, env: dict[str, str] | None = None) -> tuple[int, str, list[dict[str, str]]]:
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_bytes(data)
    done = subprocess.run([sys.executable, "-m", "labinterp.cli", "interpret", str(source), "-o", str(out),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    rows = rows_of(out.read_bytes()) if out.exists() and out.stat().st_size else []
    return done.returncode, done.stderr, rows


def post(base: str, body: bytes | Iterator[bytes], chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """POST /v1/interpret/csv; the whole answer is read (a stream broken after the 200 raises here)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("POST", "/v1/interpret/csv", body=body, headers={"Content-Type": "text/csv"},
                           encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with gunicorn({"LABINTERP_CSV_MAX_BYTES": "8000000"}, workers=1, threads=4) as (base, _):
        yield base


# ------------------------------------------------------------------ defect 2: fields over 131,072 characters
def test_a_long_header_is_refused_with_a_problem(server: str) -> None:
    data = b"specimen_id,analyte,value,unit," + b"x" * 200_000 + b"\nS,potassium,4,mmol/L,\n"
    status, headers, body = post(server, data)
    assert status == 422 and headers["Content-Type"] == "application/problem+json"
    assert "line 1 (header) is longer than 16,384 bytes (LABINTERP_CSV_MAX_LINE_BYTES)" in json.loads(body)["detail"]


def test_a_header_within_the_limit_is_read(server: str) -> None:
    status, _, body = post(server, b"specimen_id,analyte,value,unit," + b"x" * 16_000 + b"\nS,potassium,4,mmol/L,\n")
    assert status == 200 and rows_of(body)[0]["flag"] == "N"


def test_a_long_quoted_field_is_its_rows_error_and_the_stream_is_whole(server: str) -> None:
    """The issue's case: a comment opening '"oops' (here 200,000 characters long), then 200,000 rows."""
    rows = "".join(f"B{i},potassium,6.9,mmol/L,ok\n" for i in range(200_000)).encode()
    data = HEADER + b'A,potassium,4.0,mmol/L,"oops' + b"x" * 200_000 + b"\n" + rows
    status, _, body = post(server, data)
    out = rows_of(body)  # the chunked answer read to its end
    assert status == 200 and len(out) == 200_001
    assert out[0]["error"] == "line 2: longer than 16,384 bytes (LABINTERP_CSV_MAX_LINE_BYTES): not read"
    assert all(r["flag"] == "HH" and not r["error"] for r in out[1:])


@pytest.mark.parametrize("comment", [b'"' + b"y" * 140_000 + b'"', b"y" * 140_000])
def test_a_long_field_on_the_command_line(tmp_path: Path, comment: bytes) -> None:
    data = HEADER + b'A,potassium,"4.0",mmol/L,x\nB,potassium,6.9,mmol/L,' + comment + b"\nC,potassium,2.1,mmol/L,\n"
    code, err, out = cli(tmp_path, data)
    assert code == 1 and "rows 3, derived 0, abnormal 1, critical 1, errors 1" in err
    assert [r["error"][:7] for r in out] == ["", "line 3:", ""] and out[2]["flag"] == "LL"


def test_a_long_header_on_the_command_line(tmp_path: Path) -> None:
    code, err, out = cli(tmp_path, b"specimen_id,analyte,value,unit," + b"x" * 200_000 + b"\n")
    assert code == 3 and "longer than 16,384 bytes" in err and out == []


def test_the_line_limit_is_configured(tmp_path: Path) -> None:
    data = HEADER + b"A,potassium,4.0,mmol/L," + b"z" * 200 + b"\n"
    assert cli(tmp_path, data)[0] == 0
    code, _, out = cli(tmp_path, data, {"LABINTERP_CSV_MAX_LINE_BYTES": "100"})
    assert code == 1 and out[0]["error"] == "line 2: longer than 100 bytes (LABINTERP_CSV_MAX_LINE_BYTES): not read"


# ------------------------------------------------------------------ defect 3: unbalanced quotes
def check_unbalanced(out: list[dict[str, str]]) -> None:
    assert [r["specimen_id"] for r in out] == ["S1", "S2", "S3"]
    assert out[0]["error"].startswith("line 2: a quoted field opened on this line is not closed (an unbalanced quote)")
    assert [(r["flag"], r["critical"]) for r in out[1:]] == [("HH", "true"), ("LL", "true")]


def test_an_unbalanced_quote_swallows_no_row_on_the_command_line(tmp_path: Path) -> None:
    code, err, out = cli(tmp_path, UNBALANCED)
    assert code == 1 and "rows 3, derived 0, abnormal 2, critical 2, errors 1" in err
    check_unbalanced(out)


def test_an_unbalanced_quote_swallows_no_row_over_http(server: str) -> None:
    status, _, body = post(server, UNBALANCED)
    assert status == 200
    check_unbalanced(rows_of(body))


@pytest.mark.parametrize("block_bytes", [7, 40, 1 << 18])
@pytest.mark.parametrize("reader", ["numpy", "csv"])
def test_an_unbalanced_quote_at_any_block_boundary(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                   block_bytes: int, reader: str) -> None:
    if reader == "csv":
        monkeypatch.setattr(csvfile, "plain", lambda block: False)
    data = HEADER + b"S0,potassium,4.0,mmol/L,\n" * 5 + UNBALANCED[len(HEADER):] + b"S4,potassium,4.0,mmol/L,\n" * 5
    out = run(engine, data, block_bytes)
    assert [r["specimen_id"] for r in out] == ["S0"] * 5 + ["S1", "S2", "S3"] + ["S4"] * 5
    assert [r["flag"] for r in out[6:8]] == ["HH", "LL"] and out[5]["error"].startswith("line 7: a quoted field")


def test_a_field_over_lines_without_delimiters_is_one_field(engine: Engine) -> None:
    """RFC 4180: a quoted field may hold line breaks; read so while no line inside it could be a row."""
    data = HEADER + b'S1,potassium,4.0,mmol/L,"drawn at 08:00\nfrom the left arm"\nS2,potassium,6.9,mmol/L,\n'
    out = run(engine, data)
    assert [r["comment"] for r in out] == ["drawn at 08:00\nfrom the left arm", ""]
    assert [r["error"] for r in out] == ["", ""] and out[1]["flag"] == "HH"


def test_a_field_over_a_line_with_a_delimiter_is_an_unbalanced_quote(engine: Engine) -> None:
    data = HEADER + b'S1,potassium,4.0,mmol/L,"5 mL tube\nS2,potassium,6.9,mmol/L,hemolysed"\n'
    out = run(engine, data)
    assert [r["specimen_id"] for r in out] == ["S1", "S2"] and out[0]["error"].startswith("line 2: a quoted field")
    assert out[1]["flag"] == "HH" and out[1]["comment"] == 'hemolysed"'


def test_the_answer_to_an_unbalanced_quote_is_itself_balanced(engine: Engine) -> None:
    data = HEADER + b'S1,potassium,4.0,"mmol/L\nS2,potassium,6.9,mmol/L,\n'
    text = b"".join(CsvJob(ColumnarInterpreter(engine), io.BytesIO(data))).decode()
    assert text.count('"') % 2 == 0 and len(rows_of(text.encode())) == 2


# ------------------------------------------------------------------ defect 6: cost and memory bounded
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every block the readers were given."""
    sizes: list[int] = []
    original = csvfile.CsvJob._read

    def spy(self, complete, final):  # type: ignore[no-untyped-def]
        sizes.append(len(complete))
        return original(self, complete, final)

    monkeypatch.setattr(csvfile.CsvJob, "_read", spy)
    return sizes


@pytest.mark.parametrize("quoted", [False, True])
def test_a_one_panel_file_is_read_a_bounded_number_of_times(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                            quoted: bool) -> None:
    """Before: a panel was read again from its start for every block, up to 16 MiB (quadratic)."""
    row = b'P,potassium,"4.0",mmol/L,x\n' if quoted else b"P,potassium,4.0,mmol/L,x\n"
    data = HEADER + row * 60_000  # 1.5 MiB, one specimen
    sizes = reads(monkeypatch)
    out = run(engine, data, block_bytes=16_384, limits=CsvLimits(1000, 20, 200))
    assert len(out) == 60_000 and all(r["error"].endswith("not interpreted") for r in out)
    assert sum(sizes) < 3 * len(data) and max(sizes) < 3 * 16_384  # linear; the working set stays small


def test_the_working_set_is_bounded_by_the_limits_whatever_the_shape(engine: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = reads(monkeypatch)
    long_rows = b"".join(b"P,potassium,4.0,mmol/L," + b"c" * 970 + b"\n" for _ in range(400))  # 1 KB rows, one panel
    commas = b"Q,potassium,4.0,mmol/L," + b"," * 900 + b"\n"  # far too many fields
    huge = b"R,potassium,4.0,mmol/L," + b"h" * 3_000_000 + b"\n"  # one 3 MB line
    out = run(engine, HEADER + long_rows + commas * 50 + huge + b"S,potassium,6.9,mmol/L,\n", block_bytes=4096,
              limits=SMALL)
    assert len(out) == 452 and out[-1]["flag"] == "HH"
    assert out[0]["error"].endswith("LABINTERP_CSV_MAX_PANEL_ROWS): not interpreted")
    assert out[400]["error"] == "line 402: has 905 fields, the header has 5"
    assert out[450]["error"] == "line 452: longer than 1,000 bytes (LABINTERP_CSV_MAX_LINE_BYTES): not read"
    # at most two panels' worth of lines at once (max_panel_rows x max_line_bytes), however the file is shaped
    assert max(sizes) <= 2 * SMALL.max_panel_rows * (SMALL.max_line_bytes + 1) + 2 * 4096


def test_too_many_columns_are_refused(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    header = b"specimen_id,analyte,value,unit" + b",c" * 1000 + b"\n"
    response = client.post("/v1/interpret/csv", data=header, content_type="text/csv")
    assert response.status_code == 422 and "1,004 columns, at most 1,000" in response.get_json()["detail"]
    code, err, _ = cli(tmp_path, header)
    assert code == 3 and "(LABINTERP_CSV_MAX_COLUMNS)" in err
    within = b"specimen_id,analyte,value,unit" + b",c" * 996 + b"\nS,potassium,4,mmol/L" + b"," * 996 + b"\n"
    assert rows_of(client.post("/v1/interpret/csv", data=within, content_type="text/csv").data)[0]["flag"] == "N"


def test_a_panel_over_the_limit_over_http_and_the_command_line(server: str, tmp_path: Path) -> None:
    data = HEADER + b"P,potassium,4.0,mmol/L,\n" * 201 + b"Q,potassium,6.9,mmol/L,\n"
    status, _, body = post(server, data)
    out = rows_of(body)
    assert status == 200 and len(out) == 202 and out[-1]["flag"] == "HH"
    assert all("more than 200 rows in one panel" in r["error"] for r in out[:201])
    code, err, out = cli(tmp_path, HEADER + b"P,potassium,4.0,mmol/L,\n" * 200 + b"Q,potassium,6.9,mmol/L,\n")
    assert code == 0 and len(out) == 201  # 200 rows: within


# ------------------------------------------------------------------ defect 7: the spool
def test_a_chunked_upload_over_the_limit_is_413_and_within_it_is_read(server: str) -> None:
    row = b"S,potassium,4.0,mmol/L,\n"
    status, headers, body = post(server, iter([HEADER] + [row * 10_000] * 40), chunked=True)  # 9.6 MB > 8 MB
    assert status == 413 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["type"].endswith("too-large")
    status, _, body = post(server, iter([HEADER] + [row * 10_000] * 3), chunked=True)
    assert status == 200 and len(rows_of(body)) == 30_000


def test_a_spent_spool_budget_is_507_and_is_given_back() -> None:
    from labinterp.app import create_app

    app = create_app({"TESTING": True, "CSV_SPOOL_BYTES": 100_000})
    client = app.test_client()
    big = HEADER + b"S,potassium,4.0,mmol/L,\n" * 5_000  # 120 kB
    response = client.post("/v1/interpret/csv", data=big, content_type="text/csv")
    assert response.status_code == 507 and response.mimetype == "application/problem+json"
    assert "LABINTERP_CSV_SPOOL_BYTES" in response.get_json()["detail"] and response.headers["Retry-After"]
    for _ in range(3):  # each answer gives its bytes back
        response = client.post("/v1/interpret/csv", data=big[:90_000].rsplit(b"\n", 1)[0] + b"\n",
                               content_type="text/csv")
        assert response.status_code == 200 and len(rows_of(response.data)) > 3000


def unshare_available() -> bool:
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not unshare_available(), reason="needs unshare (user and mount namespaces) for a private tmpfs")
def test_a_full_spool_disk_is_507_not_500(tmp_path: Path) -> None:
    """A real ENOSPC: gunicorn runs in its own mount namespace whose spool directory is a 2 MiB
    tmpfs (nothing outside the namespace sees it); the budget is left high so the disk fills first."""
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
               f'mount -t tmpfs -o size=2m tmpfs "{spool}" && exec "$@"', "sh",
               sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
               "--workers", "1", "--threads", "2", "wsgi:app"]
    env = {**os.environ, "LABINTERP_CSV_SPOOL_DIR": str(spool), "LABINTERP_CSV_SPOOL_BYTES": str(1 << 30)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/healthz", process=process)
        status, headers, body = post(base, HEADER + b"S,potassium,4.0,mmol/L,\n" * 125_000)  # 3 MB
        assert status == 507 and headers["Content-Type"] == "application/problem+json"
        assert "LABINTERP_CSV_SPOOL_DIR, is full" in json.loads(body)["detail"]
        status, _, body = post(base, HEADER + b"S,potassium,6.9,mmol/L,\n" * 60_000)  # 1.4 MB: the 3 MB were removed
        assert status == 200 and len(rows_of(body)) == 60_000
    finally:
        stop(process)
    assert list(spool.iterdir()) == []  # the tmpfs was private to the server's namespace


def test_the_deployment_spools_to_a_disk_volume_sized_for_its_workers() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text()))
    pod = next(d for d in documents if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    spool_dir = env["LABINTERP_CSV_SPOOL_DIR"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == spool_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])["emptyDir"]
    assert volume.get("medium") != "Memory"  # in memory it would count against the 512Mi memory limit
    size_limit = int(volume["sizeLimit"].removesuffix("Mi")) << 20
    max_bytes, budget = int(env["LABINTERP_CSV_MAX_BYTES"]), int(env["LABINTERP_CSV_SPOOL_BYTES"])
    assert budget >= max_bytes  # one upload of the largest size fits a worker's budget
    assert int(env["LABINTERP_WORKERS"]) * budget < size_limit  # the workers' budgets fit the volume: 507, no eviction
    storage = container["resources"]["limits"]["ephemeral-storage"]
    assert int(storage.removesuffix("Gi")) << 30 > size_limit
