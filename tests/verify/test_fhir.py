"""POST /fhir/Observation/$verify: R4-valid, and the same dispositions as /v1/verify for the same input."""

from __future__ import annotations

import pytest

from labinterp.fhir.verify import DISPOSITION_SYSTEM
from tests.fhir.helpers import validate
from tests.verify.helpers import CASES, INDEX_CASES, ca, k, make_labs

VERIFY = "/fhir/Observation/$verify"
LOINC = {"potassium": "2823-3", "calcium": "2000-8", "magnesium": "2601-3"}
# The haemolysis cases: the index is an Observation of its own (INDEX_CASES, below), the grade a Specimen's
# condition without a degree (test below).
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


@pytest.fixture(scope="module")
def lab_client(tmp_path_factory):
    from labinterp.app import create_app

    return create_app({"TESTING": True, "LABS_DIR": str(make_labs(tmp_path_factory.mktemp("labs")))}).test_client()


def index_observation(value: object, when: str | None = None, specimen: str | None = None,
                      unit: str | None = None) -> dict:
    """The analyser's haemolysis index as its own Observation, under the test laboratory's local code."""
    resource: dict = {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://lab.example.org/codes", "code": "HIDX"}]},
                      "valueQuantity": {"value": value, **({"unit": unit} if unit else {})},
                      "subject": {"reference": "Patient/p1"}}
    if when:
        resource["effectiveDateTime"] = when
    if specimen:
        resource["specimen"] = {"reference": specimen}
    return {"fullUrl": "urn:uuid:00000000-0000-4000-8000-999999999999", "resource": resource}


@pytest.mark.parametrize(("name", "body", "code", "expected"), INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_the_haemolysis_index_observation_gives_the_same_dispositions_as_json(lab_client, name, body, code,
                                                                                expected):
    """An Observation under the laboratory's index code, of the same subject and time, is the results' index."""
    wanted = lab_client.post("/v1/verify", json={**body, "lab": "testlab"}).get_json()["results"]
    index = body["results"][0].get("hemolysis_index", body.get("hemolysis_index"))
    plain = {**body, "results": [{k: v for k, v in r.items() if k != "hemolysis_index"} for r in body["results"]],
             "collected_at": "2026-03-02T08:00:00Z"}
    bundle, urls = as_bundle(plain)
    bundle["entry"].append(index_observation(index, "2026-03-02T08:00:00Z"))
    answer = lab_client.post(VERIFY + "?lab=testlab", json=bundle).get_json()
    validate(answer)
    by_url = {e["fullUrl"]: e["resource"] for e in answer["entry"]}
    assert [disposition(by_url[u]) for u in urls] == [r["verification"]["disposition"] for r in wanted]
    assert disposition(by_url[urls[0]]) == expected
    if code is not None:
        assert any(f"({code}, action" in n["text"] for n in by_url[urls[0]]["note"])


def test_an_index_applies_to_its_own_specimen_only(lab_client):
    bundle, urls = as_bundle({"results": [k(4.5)], "collected_at": "2026-03-02T08:00:00Z"})
    bundle["entry"][0]["resource"]["specimen"] = {"reference": "Specimen/s1"}
    for specimen, expected in (("Specimen/s1", "hold"), ("Specimen/s2", "release")):
        bundle["entry"][1:] = [index_observation(600, "2026-03-02T08:00:00Z", specimen)]
        answer = lab_client.post(VERIFY + "?lab=testlab", json=bundle).get_json()
        assert disposition(answer["entry"][0]["resource"]) == expected, specimen


def test_an_index_of_another_time_or_unit_is_not_read(lab_client):
    bundle, urls = as_bundle({"results": [k(4.5)], "collected_at": "2026-03-02T08:00:00Z"})
    for extra, read in ((index_observation(600, "2026-03-02T08:00:00Z"), True),
                        (index_observation(600, "2026-03-01T08:00:00Z"), False),
                        (index_observation(600, "2026-03-02T08:00:00Z", unit="g/L"), False)):
        bundle["entry"][1:] = [extra]
        answer = lab_client.post(VERIFY + "?lab=testlab", json=bundle).get_json()
        validate(answer)
        assert disposition(answer["entry"][0]["resource"]) == ("hold" if read else "release")
    text = str(answer)
    assert "unit 'g/L' is not the index's unit (mg/dL)" in text


def test_without_a_laboratory_the_index_code_is_unknown(client):
    bundle, _ = as_bundle({"results": [k(4.5)], "collected_at": "2026-03-02T08:00:00Z"})
    bundle["entry"].append(index_observation(600, "2026-03-02T08:00:00Z"))
    answer = client.post(VERIFY, json=bundle).get_json()
    assert disposition(answer["entry"][0]["resource"]) == "release"
    assert client.post(VERIFY + "?lab=nowhere", json=bundle).status_code == 422


def test_a_haemolysed_specimen_without_a_degree_is_released_with_the_comment(client):
    """FHIR Specimen.condition HEM states no degree: the grade degree_not_stated maps as any reported grade."""
    bundle, urls = as_bundle({"results": [k(4.5)], "collected_at": "2026-03-02T08:00:00Z"})
    bundle["entry"][0]["resource"]["specimen"] = {"reference": "Specimen/s1"}
    bundle["entry"].append({"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000777", "resource": {
        "resourceType": "Specimen", "id": "s1", "condition": [{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0493", "code": "HEM"}]}]}})
    answer = client.post(VERIFY, json=bundle).get_json()
    resource = answer["entry"][0]["resource"]
    assert disposition(resource) == "release"
    assert any("(hemolysis, action comment)" in n["text"] for n in resource["note"])
    del bundle["entry"][-1]
    answer = client.post(VERIFY, json=bundle).get_json()
    assert not any("(hemolysis," in n["text"] for n in answer["entry"][0]["resource"].get("note", []))
