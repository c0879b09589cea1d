"""JSON logs: request id in and out, an allow-list of fields, exception messages never logged."""

from __future__ import annotations

import json
import logging
import sys

from labinterp.ops import logs
from tests.ops.helpers import PANEL


def _record(msg: str = "event", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("labinterp.test", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_request_id_is_taken_from_the_caller(client):
    response = client.get("/healthz", headers={"X-Request-ID": "engine-7f3a.42"})
    assert response.headers["X-Request-ID"] == "engine-7f3a.42"


def test_request_id_is_generated_when_absent_or_unsafe(client):
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32 and generated != client.get("/healthz").headers["X-Request-ID"]
    for unsafe in ("a b", "x" * 65, "id\u00e9", "<script>"):
        answered = client.get("/healthz", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert answered != unsafe and len(answered) == 32


def test_access_line_is_json_with_the_request_id_and_route_template(client, caplog):
    with caplog.at_level(logging.INFO, logger="labinterp.access"):
        client.post("/v1/interpret", json=PANEL, headers={"X-Request-ID": "trace-1"})
    record = next(r for r in caplog.records if r.name == "labinterp.access")
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["request_id"] == "trace-1"
    assert line["route"] == "/v1/interpret" and line["status"] == 200 and line["method"] == "POST"
    assert {"time", "level", "logger", "message", "duration_ms"} <= set(line)


def test_unknown_paths_are_logged_as_unmatched(client, caplog):
    with caplog.at_level(logging.INFO, logger="labinterp.access"):
        client.get("/patients/ZX81-PATIENT")
    lines = [logs.JsonFormatter().format(r) for r in caplog.records if r.name == "labinterp.access"]
    assert json.loads(lines[-1])["route"] == "unmatched" and "ZX81" not in lines[-1]


def test_fields_outside_the_allow_list_are_dropped():
    line = json.loads(logs.JsonFormatter().format(_record(status=200, value=7.77, body="{}", path="/p/1")))
    assert line["status"] == 200
    assert "value" not in line and "body" not in line and "path" not in line


def test_exception_type_and_stack_are_logged_but_not_its_message():
    sent = "9.87654" + "zz"
    try:
        float(sent)
    except ValueError:
        record = logging.LogRecord("labinterp.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["error_type"] == "ValueError" and "float(sent)" in line["stack"]
    assert "9.87654zz" not in json.dumps(line)


def test_the_formatter_would_show_a_value_put_in_a_message():
    # The counterpart of the no-patient-data tests: a value in the message itself is not hidden,
    # so the search in test_gunicorn_ops.py would find it.
    assert "7.77" in logs.JsonFormatter().format(_record(f"value {7.77}"))
