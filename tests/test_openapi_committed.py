"""The committed OpenAPI document (docs/openapi.json) matches what the code generates."""

from pathlib import Path

from labinterp.openapi import render

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def test_committed_openapi_matches_the_code():
    assert COMMITTED.read_text() == render(), "regenerate with: make openapi"
