"""Shared helpers of the FHIR tests: posting, R4B validation, terminology checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

HERE = Path(__file__).parent
EXAMPLES = HERE / "examples"
TERMINOLOGY = HERE / "terminology"
INTERPRET = "/fhir/Observation/$interpret"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def code_system(name: str) -> tuple[str, dict[str, str]]:
    data = json.loads((TERMINOLOGY / f"{name}.json").read_text())
    return data["url"], {c["code"]: c["display"] for c in data["concept"]}


def validate(resource: dict[str, Any]) -> None:
    """Structure with fhir.resources R4B, each entry on its own too; then terminology."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for entry in resource.get("entry") or []:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
        check_codes(entry["resource"])
    check_codes(resource)


def check_codes(resource: dict[str, Any]) -> None:
    """Every interpretation and referenceRange.type coding is in its code system, with its display."""
    interp_url, interp = code_system("v3-ObservationInterpretation")
    range_url, meanings = code_system("referencerange-meaning")
    for concept in resource.get("interpretation") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == interp_url or _ours(resource):
                assert coding["system"] == interp_url, coding
                assert coding["code"] in interp, coding
                assert coding["display"] == interp[coding["code"]], coding
    for rr in resource.get("referenceRange") or []:
        for coding in (rr.get("type") or {}).get("coding") or []:
            assert coding["system"] == range_url, coding
            assert coding["code"] in meanings, coding
            assert coding.get("display", meanings[coding["code"]]) == meanings[coding["code"]], coding
        # obs-3: at least low, high or text
        assert "low" in rr or "high" in rr or "text" in rr
        for side in ("low", "high"):
            if side in rr and "code" in rr[side]:
                assert rr[side].get("system"), "qty-3: a code needs a system"


def _ours(resource: dict[str, Any]) -> bool:
    return any(n.get("authorString") == "labinterp" for n in resource.get("note") or [])


def observation(loinc: str, value: float, unit: str, *, id: str = "obs-1", ucum: str | None = None,
                comparator: str | None = None, subject: str | None = "Patient/p1", effective: str | None = "2026-01-15",
                specimen: str | None = None, ref_range: tuple[float | None, float | None] | None = None,
                status: str = "final") -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "unit": unit}
    if ucum:
        quantity.update(system=UCUM, code=ucum)
    if comparator:
        quantity["comparator"] = comparator
    obs: dict[str, Any] = {"resourceType": "Observation", "id": id, "status": status,
                           "code": {"coding": [{"system": LOINC, "code": loinc}]}, "valueQuantity": quantity}
    if subject:
        obs["subject"] = {"reference": subject}
    if effective:
        obs["effectiveDateTime"] = effective
    if specimen:
        obs["specimen"] = {"display": specimen}
    if ref_range is not None:
        rr: dict[str, Any] = {}
        if ref_range[0] is not None:
            rr["low"] = {"value": ref_range[0], "unit": unit}
        if ref_range[1] is not None:
            rr["high"] = {"value": ref_range[1], "unit": unit}
        obs["referenceRange"] = [rr]
    return obs


def patient(birth: str | None = "1980-06-01", gender: str | None = "female", id: str = "p1") -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": id}
    if birth:
        out["birthDate"] = birth
    if gender:
        out["gender"] = gender
    return out


def bundle(*resources: dict[str, Any], type: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": type,
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": copy.deepcopy(r)}
                      for i, r in enumerate(resources)]}


def post(client: Any, body: Any, content_type: str = "application/fhir+json") -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(INTERPRET, data=data, headers={"Content-Type": content_type})


def observations(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "Observation"]


def outcomes(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]


def flag(resource: dict[str, Any]) -> str | None:
    url, _ = code_system("v3-ObservationInterpretation")
    for concept in resource.get("interpretation") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == url and _ours(resource):
                return str(coding["code"])
    return None


def notes(resource: dict[str, Any]) -> list[str]:
    return [n["text"] for n in resource.get("note") or [] if n.get("authorString") == "labinterp"]


def outcome_after(answer: dict[str, Any], resource_id: str) -> dict[str, Any] | None:
    entries = [e["resource"] for e in answer["entry"]]
    for i, resource in enumerate(entries):
        if resource["resourceType"] == "Observation" and resource.get("id") == resource_id:
            following = entries[i + 1] if i + 1 < len(entries) else None
            if (following is not None and following["resourceType"] == "OperationOutcome"
                    and any(i.get("expression") for i in following["issue"])):
                return following
            return None
    raise AssertionError(f"no Observation {resource_id}")
