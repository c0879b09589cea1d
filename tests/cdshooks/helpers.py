"""Builders for CDS Hooks requests and the spec's required fields (CDS Hooks 2.0)."""

from __future__ import annotations

import uuid
from typing import Any

SERVICE = "/cds-services/labinterp-electrolytes"
INDICATORS = ("info", "warning", "critical")


def obs(loinc: str, value: float, unit: str, *, id: str, when: str = "2026-03-01T08:00:00Z",
        patient: str = "p1", comparator: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "unit": unit}
    if comparator:
        quantity["comparator"] = comparator
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when, "valueQuantity": quantity}


def searchset(*observations: dict[str, Any]) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(observations)}
    if observations:
        bundle["entry"] = [{"fullUrl": f"http://ehr.example/fhir/Observation/{o['id']}", "resource": o}
                           for o in observations]
    return bundle


def patient(birth: str = "1970-05-05", gender: str = "female", id: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "gender": gender, "birthDate": birth}


def request(*observations: dict[str, Any], prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                            "fhirServer": "http://127.0.0.1:9/fhir",
                            "context": {"userId": "Practitioner/example", "patientId": "p1"},
                            "prefetch": prefetch if prefetch is not None else {"patient": patient(),
                                                                               "labs": searchset(*observations)}}
    body.update(extra)
    return body


def check_response(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The CDS Hooks 2.0 response's required fields and constraints."""
    assert set(body) >= {"cards"} and isinstance(body["cards"], list)
    for card in body["cards"]:
        assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140, card["summary"]
        assert card["indicator"] in INDICATORS
        assert isinstance(card["source"], dict) and isinstance(card["source"]["label"], str) and card["source"]["label"]
        assert card["source"]["url"].startswith("http")
        if "detail" in card:
            assert isinstance(card["detail"], str)
        uuid.UUID(card["uuid"])
    return body["cards"]  # type: ignore[no-any-return]
