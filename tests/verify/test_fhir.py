"""POST /fhir/Observation/$verify: R4-valid, and the same dispositions as /v1/verify for the same input."""

from __future__ import annotations

import pytest

from labinterp.fhir.verify import DISPOSITION_SYSTEM
from tests.fhir.helpers import validate
from tests.verify.helpers import CASES, ca, k

VERIFY = "/fhir/Observation/$verify"
LOINC = {"potassium": "2823-3", "calcium": "2000-8", "magnesium": "2601-3"}
# FHIR carries no haemolysis index or grade in what the service reads: those cases are the JSON door's only.
FHIR_CASES = [c for c in CASES if "hemolysis" not in str(c[1])]


def observation(n: int, r: dict, when: str | None) -> dict:
    quantity = {"value": r["value"], "unit": r["unit"], "system": "http://unitsofmeasure.org", "code": r["unit"]}
    if r.get("comparator"):
        quantity["comparator"] = r["comparator"]
    resource = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": LOINC[r["analyte"]]}]},
                "valueQuantity": quantity, "subject": {"reference": "Patient/p1"}}
    if when:
        resource["effectiveDateTime"] = when
    if r.get("specimen"):
        resource["specimen"] = {"display": r["specimen"].replace("_", " ")}
    return {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": resource}


def as_bundle(body: dict) -> tuple[dict, list[str]]:
    """The body as a Bundle: previous results first, then the current ones (their fullUrls returned)."""
    entries = [observation(i, p, p.get("collected_at")) for i, p in enumerate(body.get("previous", []))]
    current = [observation(100 + i, r, body.get("collected_at")) for i, r in enumerate(body["results"])]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries + current}, [e["fullUrl"] for e in current]


def disposition(resource: dict) -> str:
    (tag,) = [t for t in resource["meta"]["tag"] if t["system"] == DISPOSITION_SYSTEM]
    return tag["code"]


@pytest.mark.parametrize(("name", "body", "code", "expected"), FHIR_CASES, ids=[c[0] for c in FHIR_CASES])
def test_fhir_gives_the_same_dispositions_as_json(client, name, body, code, expected):
    wanted = [r["verification"]["disposition"] for r in client.post("/v1/verify", json=body).get_json()["results"]]
    bundle, urls = as_bundle(body)
    response = client.post(VERIFY, json=bundle)
    assert response.status_code == 200
    answer = response.get_json()
    validate(answer)
    by_url = {e["fullUrl"]: e["resource"] for e in answer["entry"]}
    got = [disposition(by_url[u]) for u in urls]
    assert got == wanted and got[0] == expected
    if code is not None:
        notes = [n["text"] for n in by_url[urls[0]].get("note", [])]
        assert any(f"({code}, action" in n for n in notes), notes


def test_held_observations_do_not_become_previous_results(client):
    bundle, urls = as_bundle({"results": [ca(2.3)], "collected_at": "2026-03-03T08:00:00Z",
                              "previous": [ca(2.4, collected_at="2026-03-01T08:00:00Z"),
                                           ca(1.7, collected_at="2026-03-02T08:00:00Z")]})
    answer = client.post(VERIFY, json=bundle).get_json()
    dispositions = [disposition(e["resource"]) for e in answer["entry"] if e["resource"]["resourceType"] ==
                    "Observation"]
    assert dispositions == ["release", "hold", "release"]


def test_the_summary_counts_the_dispositions(client):
    bundle, _ = as_bundle({"results": [k(6.8), k(4.0, comparator=None)]})
    summary = client.post(VERIFY, json=bundle).get_json()["entry"][-1]["resource"]
    assert "1 Observation(s) held, 1 released" in summary["issue"][-1]["diagnostics"]


def test_bad_fhir_is_an_operation_outcome(client):
    response = client.post(VERIFY, data="{not json", content_type="application/fhir+json")
    assert response.status_code == 400 and response.get_json()["resourceType"] == "OperationOutcome"
    response = client.post(VERIFY, json={"resourceType": "Patient"})
    assert response.status_code == 422 and response.get_json()["resourceType"] == "OperationOutcome"
