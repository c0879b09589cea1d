"""A real gunicorn on 127.0.0.1: graceful SIGTERM, no banner, metrics over all workers, no patient data in logs."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.helpers import PANEL, kill_instance, post_json
from tests.support.server import gunicorn

pytestmark = pytest.mark.e2e

# Recognisable values: none of them may appear in any log line.
SENTINELS = ("7.654321", "41.234567", "PT-ZX81Q-77", "8.765432zz", "mg/ZX81Q")


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _read_response(s: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, read from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _partial_request(port: int, body: bytes) -> socket.socket:
    """A connection a worker is serving (a first request answered on it), then a second request
    whose body is only partly sent: it is in flight until _finish sends the rest."""
    s = socket.create_connection(("127.0.0.1", port), timeout=40)
    head = ("POST /v1/interpret HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: %s\r\n\r\n")
    s.sendall((head % "keep-alive").encode() + body)
    assert _read_response(s).startswith(b"HTTP/1.1 200")
    s.sendall((head % "close").encode() + body[:10])
    return s


def _finish(s: socket.socket, body: bytes) -> bytes:
    try:
        s.sendall(body[10:])
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        s.close()


def test_sigterm_lets_the_request_in_flight_finish():
    body = json.dumps(PANEL).encode()
    with gunicorn(workers=1, threads=2) as (base, process):
        s = _partial_request(_port(base), body)
        time.sleep(0.5)  # the worker is now reading this request's body
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # shutdown has begun
        answer = _finish(s, body)
        assert process.wait(timeout=35) == 0
    assert answer.startswith(b"HTTP/1.1 200")
    assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["results"]) == 3


def test_a_killed_instance_drops_the_request_in_flight():
    # The counterpart: without the graceful path the same request is lost, so the test above can fail.
    body = json.dumps(PANEL).encode()
    with gunicorn(workers=1, threads=2) as (base, process):
        s = _partial_request(_port(base), body)
        time.sleep(0.5)
        kill_instance(process)
        answer = _finish(s, body)
    assert not answer.startswith(b"HTTP/1.1 200")


def test_no_server_banner_even_on_gunicorns_own_errors():
    with gunicorn(workers=1, threads=2) as (base, _):
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:  # noqa: S310 - loopback
            assert response.headers.get("Server") is None
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        malformed = _raw(_port(base), b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
    assert malformed.startswith(b"HTTP/1.1 400")
    assert b"\r\nserver:" not in malformed.lower()


def test_metrics_add_up_every_worker():
    with gunicorn(workers=2, threads=2) as (base, _):
        for _ in range(40):
            assert post_json(base, "/v1/interpret", PANEL)[0] == 200
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
    counts = {s.labels["analyte"]: s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "labinterp_interpretations_total"}
    assert counts == {"calcium": 40, "magnesium": 40, "potassium": 40}
    served = {s.labels.get("pid") for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "labinterp_http_requests_total"}
    assert served  # aggregated: no per-pid label leaks into the exposition
    assert served == {None}


def test_no_patient_data_in_any_log_line(tmp_path: Path):
    log_path = tmp_path / "gunicorn.log"
    panel = {"results": [{"id": "PT-ZX81Q-77", "analyte": "potassium", "value": 7.654321, "unit": "mmol/L"},
                         {"analyte": "calcium", "value": "8.765432zz", "unit": "mg/ZX81Q"}],
             "patient": {"age_years": 41.234567, "sex": "female"}}
    good = dict(panel, results=panel["results"][:1])
    ids = [f"probe-{i}" for i in range(6)]
    with gunicorn(env={"LABINTERP_LOG_LEVEL": "DEBUG"}, workers=1, threads=2, log_path=log_path) as (base, _):
        statuses = [
            post_json(base, "/v1/interpret", good, {"X-Request-ID": ids[0]})[0],
            post_json(base, "/v1/interpret", panel, {"X-Request-ID": ids[1]})[0],
            post_json(base, "/v1/interpret?patient=PT-ZX81Q-77", good, {"X-Request-ID": ids[2]})[0],
            post_json(base, "/v1/patients/PT-ZX81Q-77", good, {"X-Request-ID": ids[3]})[0],
            post_json(base, "/fhir/Observation/PT-ZX81Q-77", good, {"X-Request-ID": ids[4]})[0],
        ]
        request = urllib.request.Request(base + "/v1/interpret", data=b'{"results": [7.654321, PT-ZX81Q-77',
                                         headers={"Content-Type": "application/json", "X-Request-ID": ids[5]})
        try:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
        _raw(int(base.rsplit(":", 1)[1]), b"GET /v1 HTTP/1.1\r\nBad PT-ZX81Q-77: 7.654321\r\n\r\n")
    assert statuses[0] == 200 and statuses[1] == 422 and statuses[5] == 400
    lines = log_path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    logged_ids = {line.get("request_id") for line in parsed}
    assert set(ids) <= logged_ids  # each probe was logged...
    assert any(line["message"].startswith("Invalid request from") for line in parsed)
    for sentinel in SENTINELS:  # ...and none of its contents
        assert not [line for line in lines if sentinel in line], sentinel


def test_a_deployers_metrics_directory_is_created_and_emptied_at_start(tmp_path: Path):
    directory = tmp_path / "metrics" / "labinterp"  # does not exist yet (an emptyDir mounted over /tmp)
    counted = 'labinterp_interpretations_total{analyte="calcium",flag="N"} 1.0'
    with gunicorn(env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}, workers=1) as (base, _):
        assert post_json(base, "/v1/interpret", PANEL)[0] == 200
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:  # noqa: S310 - loopback
            assert counted in response.read().decode()
    assert any(directory.glob("*.db"))  # the stopped run's files stay behind...
    with gunicorn(env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}, workers=1) as (base, _), \
            urllib.request.urlopen(base + "/metrics", timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    assert "labinterp_http_requests_total" in text
    assert 'labinterp_interpretations_total{analyte="calcium"' not in text  # ...and are not counted again
