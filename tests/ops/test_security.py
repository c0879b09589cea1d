"""Security headers on every response, no CORS, no debug in production (size limits: tests/api)."""

from __future__ import annotations

import pytest

from labinterp.ops.headers import CONTENT_SECURITY_POLICY
from tests.ops.helpers import PANEL, make_app

REQUIRED_CSP = ("default-src 'self'", "img-src 'self' data:", "style-src 'self'", "script-src 'self'",
                "connect-src 'self'", "frame-ancestors 'none'")


def _responses(client):  # type: ignore[no-untyped-def]
    return {
        "interpret": client.post("/v1/interpret", json=PANEL),
        "invalid": client.post("/v1/interpret", json={"results": [{"analyte": "potassium"}]}),
        "not found": client.get("/nowhere"),
        "wrong method": client.delete("/v1/interpret"),
        "wrong type": client.post("/v1/interpret", data="x", content_type="text/plain"),
        "page": client.get("/"),
        "docs": client.get("/docs"),
        "docs init": client.get("/docs/init.js"),
        "health": client.get("/healthz"),
        "metrics": client.get("/metrics"),
    }


def test_every_response_carries_the_security_headers(client):
    for name, response in _responses(client).items():
        csp = response.headers.get("Content-Security-Policy", "")
        assert all(d in csp.split("; ") for d in REQUIRED_CSP), name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert "Server" not in response.headers, name
        assert response.headers["X-Request-ID"], name


def test_policy_forbids_other_hosts():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    for name in ("default-src", "style-src", "script-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert "http" not in CONTENT_SECURITY_POLICY and "*" not in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY


def test_the_docs_page_needs_no_inline_script(client):
    # The policy forbids inline script: Swagger UI must start from /docs/init.js.
    page = client.get("/docs").get_data(as_text=True)
    assert '<script src="/docs/init.js">' in page
    assert "<script>" not in page and "<style" not in page


def test_patient_answers_are_not_cached(client):
    assert client.post("/v1/interpret", json=PANEL).headers["Cache-Control"] == "no-store"


def test_cors_is_off_on_the_api(client):
    origin = {"Origin": "https://elsewhere.example"}
    response = client.post("/v1/interpret", json=PANEL, headers=origin)
    assert response.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h, _ in response.headers)
    preflight = client.options("/v1/interpret", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    for path in ("/fhir/metadata", "/healthz", "/openapi.json"):
        assert "Access-Control-Allow-Origin" not in client.get(path, headers=origin).headers, path


def test_cors_stays_where_cds_hooks_requires_it(client):
    # The CDS Hooks door sets its own CORS headers (the spec requires them); the ops headers keep them.
    response = client.get("/cds-services", headers={"Origin": "https://ehr.example"})
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_debug_is_impossible_in_production():
    with pytest.raises(RuntimeError, match="debug"):
        make_app(ENV="production", DEBUG=True)
    assert make_app(ENV="development", DEBUG=True).debug is False
    assert make_app().debug is False
