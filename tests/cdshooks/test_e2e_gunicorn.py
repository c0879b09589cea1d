"""End to end on a real gunicorn (127.0.0.1): the FHIR door, and the CDS Hooks door with JWTs configured
through the environment. The server's log must hold no patient data."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cdshooks.helpers import SERVICE, check_response, obs, patient, request, searchset
from tests.fhir.helpers import example, validate
from tests.support.server import gunicorn

EHR = "https://ehr.example.org"
pytestmark = pytest.mark.e2e


def _post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (folder / "issuers.json").write_text(json.dumps({EHR: pem}))
    log = folder / "server.log"
    env = {"LABINTERP_CDS_JWT_ISSUERS": str(folder / "issuers.json"), "LABINTERP_CDS_AUDIENCE": "placeholder"}
    with gunicorn(env={**env}, workers=1, threads=4, log_path=log) as (base, process):
        yield base, key, log


def _token(key, base):
    now = int(time.time())
    return jwt.encode({"iss": EHR, "aud": "placeholder", "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
                      key, algorithm="ES384")


def test_fhir_and_cds_hooks_on_gunicorn(server):
    base, key, log = server
    # FHIR: the US Core example, validated; a wrong body gets an OperationOutcome
    status, headers, body = _post(base + "/fhir/Observation/$interpret",
                                  example("us-core-Observation-serum-potassium.json"),
                                  {"Content-Type": "application/fhir+json"})
    assert status == 200 and headers["Content-Type"].startswith("application/fhir+json")
    validate(body)
    status, headers, body = _post(base + "/fhir/Observation/$interpret", {"resourceType": "Patient"},
                                  {"Content-Type": "application/fhir+json"})
    assert status == 422 and body["resourceType"] == "OperationOutcome"

    # CDS Hooks: signed token accepted, then the same token refused (replay), no token refused
    call = request(obs("2823-3", 6.4321, "mmol/L", id="k"),
                   prefetch={"patient": patient(birth="1961-02-03"),
                             "labs": searchset(obs("2823-3", 6.4321, "mmol/L", id="k"))})
    token = _token(key, base)
    headers_in = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    status, headers, body = _post(base + SERVICE, call, headers_in)
    assert status == 200, body
    [card] = check_response(body)
    assert card["indicator"] == "critical"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert _post(base + SERVICE, call, headers_in)[0] == 401
    assert _post(base + SERVICE, call, {"Content-Type": "application/json"})[0] == 401

    # no patient data in the server's log: not the birth date, the value, the ids
    text = log.read_text()
    assert "/cds-services" in text and "CDS Hooks: EHR JWTs verified" in text  # the log is really there
    for secret in ("1961-02-03", "6.4321", "Amy Shaw", "serum-potassium", call["hookInstance"], token):
        assert secret not in text
