"""Defect 4 of issue 11: a body over LABINTERP_MAX_BODY_BYTES is a 413 on every door, chunked or not,
through a real gunicorn (werkzeug used to cut a chunked body at the limit and process the rest)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.cdshooks.helpers import SERVICE, obs, request
from tests.fhir.helpers import INTERPRET, observation
from tests.support.server import gunicorn

pytestmark = pytest.mark.e2e
LIMIT = 4096
CSV_LIMIT = 8192


def hl7_message(padding: int) -> bytes:
    """A potassium of 6.9, deleted (OBX-11 D) in the last OBX, after `padding` bytes of notes."""
    head = ("MSH|^~\\&|LIS|LAB|EHR|WARD|20261123083000||ORU^R01|M1|P|2.5.1\r"
            "PID|1||P1||DOE^JANE||19700315|F\r"
            "OBR|1|O1|F1|24362-6^Panel^LN|||20261123073000\r"
            "OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L|||||F\r")
    notes = "".join(f"NTE|{i}|L|{'x' * 90}\r" for i in range(1, padding // 100 + 1))
    return (head + notes + "OBX|2|NM|2823-3^Potassium^LN||6.9|mmol/L|||||D\r").encode()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    # the FHIR door has its own limit since issue 13 (a whole patient Bundle): set to the same here
    env = {"LABINTERP_MAX_BODY_BYTES": str(LIMIT), "LABINTERP_CSV_MAX_BYTES": str(CSV_LIMIT),
           "LABINTERP_FHIR_MAX_BODY_BYTES": str(LIMIT)}
    with gunicorn(env=env, workers=1, threads=2) as (base, _):
        yield base


def send(base: str, path: str, body: bytes, content_type: str, chunked: bool) -> tuple[int, str, bytes]:
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        if chunked:
            pieces = (body[i:i + 1000] for i in range(0, len(body), 1000))
            connection.request("POST", path, body=pieces, headers={"Content-Type": content_type},
                               encode_chunked=True)
        else:
            connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def big_json(field: str, body: dict, size: int) -> bytes:
    """`body` with a string member `field` padding it to `size` bytes (valid JSON either way)."""
    raw = json.dumps({**body, field: ""}).encode()
    return json.dumps({**body, field: "x" * (size - len(raw))}).encode()


V1 = {"results": [{"analyte": "potassium", "value": 6.9, "unit": "mmol/L"}]}
DOORS = {
    "v1": ("/v1/interpret", "application/json", lambda n: big_json("padding", V1, n), LIMIT),
    "batch": ("/v1/interpret/batch", "application/json",
              lambda n: big_json("padding", {"panels": [{"id": "a", **V1}]}, n), LIMIT),
    "csv": ("/v1/interpret/csv", "text/csv",
            lambda n: (lambda head: head + b"#" * (n - len(head)))(
                b"specimen_id,analyte,value,unit,comment\r\ns1,potassium,6.9,mmol/L,"), CSV_LIMIT),
    "hl7": ("/v1/hl7", "application/hl7-v2", lambda n: hl7_message(n - 400), LIMIT),
    "fhir": (INTERPRET, "application/fhir+json",
             lambda n: big_json("language", observation("2823-3", 6.9, "mmol/L"), n), LIMIT),
    "cds": (SERVICE, "application/json",
            lambda n: big_json("padding", request(obs("2823-3", 6.9, "mmol/L", id="o1")), n), LIMIT),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("door", sorted(DOORS))
def test_over_the_limit_is_413_problem(server, door, chunked):
    path, content_type, make, limit = DOORS[door]
    body = make(limit + 500)
    assert len(body) > limit
    status, answer_type, answer = send(server, path, body, content_type, chunked)
    assert status == 413, answer[:300]
    expected = "application/fhir+json" if door == "fhir" else "application/problem+json"
    assert answer_type.startswith(expected)


@pytest.mark.parametrize("door", sorted(DOORS))
def test_under_the_limit_chunked_is_not_refused_for_size(server, door):
    path, content_type, make, limit = DOORS[door]
    body = make(limit - 300)
    assert len(body) <= limit
    status, _, answer = send(server, path, body, content_type, chunked=True)
    assert status != 413, answer[:300]
    assert status < 500


def test_the_deleted_obx_past_the_cut_is_never_interpreted(server):
    message = hl7_message(LIMIT)
    assert message.index(b"||D\r") > LIMIT  # the OBX-11 D lies past the cut
    for chunked in (False, True):
        status, _, answer = send(server, "/v1/hl7", message, "application/hl7-v2", chunked)
        assert status == 413 and b"6.9" not in answer


def test_a_message_of_exactly_the_limit_is_read_whole(server):
    message = hl7_message(LIMIT - 400)
    message = message.replace(b"|x", b"|" + b"x" * (LIMIT - len(message) + 1), 1)
    assert len(message) == LIMIT
    status, _, answer = send(server, "/v1/hl7", message, "application/hl7-v2", chunked=True)
    assert status == 200
    (first, deleted) = json.loads(answer)["observations"]
    assert first["outcome"] == "interpreted" and deleted["outcome"] == "skipped"
