"""API keys: optional, hashed, constant-time, on /v1 and /fhir only; the page can be switched off."""

from __future__ import annotations

import hashlib
import logging

import pytest
from flask import Response

from labinterp.ops import auth
from tests.ops.helpers import PANEL, make_app

KEY = "k" * 20 + "-first-key"
OTHER_KEY = "z" * 24


@pytest.fixture(scope="module")
def keyed_app():  # type: ignore[no-untyped-def]
    app = make_app(API_KEYS=f"{KEY}, {OTHER_KEY}")
    return app


@pytest.fixture()
def keyed(keyed_app):  # type: ignore[no-untyped-def]
    return keyed_app.test_client()


def test_open_without_keys(client):
    assert client.post("/v1/interpret", json=PANEL).status_code == 200


def test_missing_key_is_401_problem(keyed):
    response = keyed.post("/v1/interpret", json=PANEL)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert "X-API-Key" in response.get_json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_key_is_401(keyed):
    assert keyed.post("/v1/interpret", json=PANEL, headers={"X-API-Key": KEY + "x"}).status_code == 401
    assert keyed.post("/v1/interpret", json=PANEL,
                      headers={"Authorization": "Basic " + KEY}).status_code == 401


def test_key_in_header_or_bearer_is_accepted(keyed):
    assert keyed.post("/v1/interpret", json=PANEL, headers={"X-API-Key": KEY}).status_code == 200
    assert keyed.post("/v1/interpret", json=PANEL, headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    assert keyed.get("/v1/analytes", headers={"X-API-Key": OTHER_KEY}).status_code == 200


def test_every_v1_and_fhir_path_is_protected(keyed):
    for path in ("/v1/analytes", "/v1/reference-intervals", "/v1/interpret/batch", "/v1/interpret/csv",
                 "/v1", "/v1/hl7", "/fhir/Observation/$interpret", "/fhir/OperationDefinition/x", "/fhir"):
        assert keyed.get(path).status_code == 401, path


def test_open_endpoints_stay_open_with_keys(keyed):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/fhir/metadata"):
        assert keyed.get(path).status_code == 200, path
    # CDS Hooks answers to the EHR's JWT (its own door), never to an API key.
    assert keyed.get("/cds-services").status_code != 401


def test_fhir_401_uses_the_registered_renderer():
    app = make_app(API_KEYS=KEY)
    calls = []

    def renderer(status, detail, code, errors, headers):  # type: ignore[no-untyped-def]
        calls.append(status)
        return Response('{"resourceType": "OperationOutcome"}', status=status, mimetype="application/fhir+json",
                        headers=headers)

    app.extensions.setdefault("labinterp_error_renderers", []).insert(0, ("/fhir", renderer))
    response = app.test_client().post("/fhir/Observation/$interpret", json={})
    assert response.status_code == 401 and response.mimetype == "application/fhir+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert calls == [401]
    # /v1 keeps problem+json in the same app.
    assert app.test_client().get("/v1/analytes").mimetype == "application/problem+json"


def test_real_fhir_door_answers_401_as_operation_outcome(keyed_app):
    response = keyed_app.test_client().post("/fhir/Observation/$interpret", json={})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_keys_are_kept_only_as_sha256_digests():
    keys = auth.ApiKeys([KEY, OTHER_KEY, KEY])
    assert len(keys) == 2
    stored = vars(keys)
    assert KEY not in repr(stored) and OTHER_KEY not in repr(stored)
    assert set(stored["_digests"]) == {hashlib.sha256(k.encode()).digest() for k in (KEY, OTHER_KEY)}


def test_every_digest_is_compared_in_constant_time(monkeypatch):
    keys = auth.ApiKeys([KEY, OTHER_KEY, "y" * 30])
    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert keys.accepts(KEY)  # the first key matches: the others are compared all the same
    assert len(calls) == 3
    assert not keys.accepts("wrong" * 5)
    assert not keys.accepts(None) and not keys.accepts("")


def test_keys_from_file_with_comments(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# integration engine\n{KEY}  # rotated 2026-11\n\n{OTHER_KEY}\n")
    keys = auth.ApiKeys.from_settings({"API_KEYS": "", "API_KEYS_FILE": str(path)})
    assert len(keys) == 2 and keys.accepts(KEY) and keys.accepts(OTHER_KEY)
    assert not keys.accepts("# integration engine")


def test_missing_key_file_stops_start_up(tmp_path):
    with pytest.raises(ValueError, match="LABINTERP_API_KEYS_FILE"):
        make_app(API_KEYS_FILE=str(tmp_path / "absent"))


def test_short_key_stops_start_up_without_quoting_it():
    with pytest.raises(ValueError) as raised:
        make_app(API_KEYS="short-key-12")
    assert "short-key-12" not in str(raised.value)


def test_start_up_log_says_open_or_protected(caplog):
    with caplog.at_level(logging.INFO, logger="labinterp"):
        make_app()
        make_app(API_KEYS=KEY)
    messages = [r.getMessage() for r in caplog.records if r.name == "labinterp.ops"]
    assert any("OPEN" in m and r_level == "WARNING" for m, r_level in
               zip(messages, [r.levelname for r in caplog.records if r.name == "labinterp.ops"], strict=True))
    assert any("need a key" in m for m in messages)


def test_teaching_page_can_be_switched_off():
    on = make_app().test_client()
    off = make_app(TEACHING_PAGE="off").test_client()
    assert on.get("/").status_code == 200
    assert off.get("/").status_code == 404
    assert off.get("/web/static/app.js").status_code == 404
    assert off.post("/v1/interpret", json=PANEL).status_code == 200


def test_openapi_document_declares_the_keys_only_when_they_are_on(client, keyed):
    plain = client.get("/openapi.json").get_json()
    assert "securitySchemes" not in plain.get("components", {})
    assert "401" not in plain["paths"]["/v1/interpret"]["post"]["responses"]
    document = keyed.get("/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header",
                                                                   "name": "X-API-Key"}
    interpret = document["paths"]["/v1/interpret"]["post"]
    assert interpret["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert "application/problem+json" in interpret["responses"]["401"]["content"]
    fhir = document["paths"]["/fhir/Observation/$interpret"]["post"]
    assert "application/fhir+json" in fhir["responses"]["401"]["content"]
    for open_path in ("/healthz", "/readyz", "/metrics", "/fhir/metadata"):
        assert "security" not in document["paths"][open_path]["get"], open_path
