"""POST /v1/hl7/verify: the same dispositions as /v1/verify; annotate=1 writes NTEs and OBX-11."""

from __future__ import annotations

import pytest

from tests.verify.helpers import CASES, INDEX_CASES, LAB_CASES, k, make_labs

LOINC = {"potassium": "2823-3", "calcium": "2000-8", "magnesium": "2601-3"}
HL7 = "application/hl7-v2"
# An HL7 message carries no earlier results (the history's tests have them), no haemolysis grade and (here) no
# specimen: those cases stay with the JSON, CSV and FHIR doors; the index is an OBX of its own (INDEX_CASES).
HL7_CASES = [c for c in CASES if not any(word in str(c[1]) for word in ("previous", "hemolysis", "specimen"))]
HL7_LAB_CASES = [c for c in LAB_CASES if not any(word in str(c[1]) for word in ("previous", "hemolysis"))]


def message(results: list[dict], collected: str = "202603020800", index: str | None = None,
            index_unit: str = "mg/dL") -> str:
    lines = ["MSH|^~\\&|LIS|LAB|LABINTERP|HOSP|202603020900||ORU^R01|MSG1|P|2.5", "PID|1||12345||DOE^JANE||19700101|F",
             f"OBR|1|||PANEL|||{collected}"]
    for i, r in enumerate(results, 1):
        code = f"{LOINC[r['analyte']]}^{r['analyte']}^LN"
        if r.get("comparator"):
            lines.append(f"OBX|{i}|SN|{code}||{r['comparator']}^{r['value']}|{r['unit']}|||||F")
        else:
            lines.append(f"OBX|{i}|NM|{code}||{r['value']}|{r['unit']}|||||F")
    if index is not None:  # the analyser's haemolysis index, under the test laboratory's local code
        lines.append(f"OBX|{len(results) + 1}|NM|HI^Haemolysis index^L||{index}|{index_unit}|||||F")
    return "\r".join(lines) + "\r"


@pytest.mark.parametrize(("name", "body", "code", "expected"), HL7_CASES + HL7_LAB_CASES,
                         ids=[c[0] for c in HL7_CASES + HL7_LAB_CASES])
def test_hl7_gives_the_same_dispositions_as_json(app, tmp_path, name, body, code, expected):
    from labinterp.app import create_app
    from tests.verify.helpers import make_labs

    lab = (name, body, code, expected) in HL7_LAB_CASES
    client = (create_app({"TESTING": True, "LABS_DIR": str(make_labs(tmp_path))}) if lab else app).test_client()
    json_body = {**body, "lab": "testlab"} if lab else body
    wanted = [r["verification"]["disposition"] for r in client.post("/v1/verify", json=json_body).get_json()["results"]]
    response = client.post("/v1/hl7/verify" + ("?lab=testlab" if lab else ""), data=message(body["results"]),
                           content_type=HL7)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    got = [o["verification"]["disposition"] for o in answer["observations"]]
    assert got == wanted and got[0] == expected
    assert answer["disposition"] == ("hold" if "hold" in got else "release")
    if code is not None:
        assert code in [r["code"] for r in answer["observations"][0]["verification"]["reasons"]]


def test_annotate_writes_ntes_and_obx_11(client):
    response = client.post("/v1/hl7/verify?annotate=1", data=message([k(6.8), k(4.0)]), content_type=HL7)
    assert response.status_code == 200 and response.mimetype == HL7
    segments = response.get_data(as_text=True).split("\r")
    obx = [s for s in segments if s.startswith("OBX")]
    assert obx[0].split("|")[11] == "R" and obx[1].split("|")[11] == "F"  # held: not verified; released: as sent
    index = segments.index(obx[0])
    assert segments[index + 1].startswith("NTE|1|O|labinterp") and "HOLD (critical_value, action notify)" in \
        segments[index + 1]
    assert not segments[segments.index(obx[1]) + 1].startswith("NTE")


def test_a_message_that_does_not_parse_is_problem_json(client):
    response = client.post("/v1/hl7/verify", data="MSH|^~\\&|A|B|C|D|20261123||ADT^A01|1|P|2.5\r",
                           content_type=HL7)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    response = client.post("/v1/hl7/verify", data=message([k(4.0)]), content_type="application/json")
    assert response.status_code == 415
    response = client.post("/v1/hl7/verify?lab=nowhere", data=message([k(4.0)]), content_type=HL7)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("name", "body", "code", "expected"), HL7_CASES, ids=[c[0] for c in HL7_CASES])
def test_hl7_verify_parameter_answers_as_the_verify_route(app, name, body, code, expected):
    client = app.test_client()
    text = message(body["results"])
    route = client.post("/v1/hl7/verify", data=text, content_type=HL7)
    parameter = client.post("/v1/hl7?verify=1", data=text, content_type=HL7)
    assert parameter.status_code == route.status_code == 200
    assert parameter.get_json() == route.get_json() and "disposition" in parameter.get_json()
    plain = client.post("/v1/hl7", data=text, content_type=HL7).get_json()
    assert "disposition" not in plain  # without the parameter: interpretation only
    annotated = client.post("/v1/hl7?verify=1&annotate=1", data=text, content_type=HL7)
    assert annotated.mimetype == HL7 and annotated.data == client.post(
        "/v1/hl7/verify?annotate=1", data=text, content_type=HL7).data


@pytest.fixture(scope="module")
def lab_client(tmp_path_factory):
    from labinterp.app import create_app

    return create_app({"TESTING": True, "LABS_DIR": str(make_labs(tmp_path_factory.mktemp("labs")))}).test_client()


def index_of(body: dict) -> object:
    return body["results"][0].get("hemolysis_index", body.get("hemolysis_index"))


@pytest.mark.parametrize(("name", "body", "code", "expected"), INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_the_haemolysis_index_obx_gives_the_same_dispositions_as_json(lab_client, name, body, code, expected):
    """An OBX under the laboratory's index code (rule.hemolysis.index_codes) is its OBR group's index."""
    wanted = lab_client.post("/v1/verify", json={**body, "lab": "testlab"}).get_json()["results"][0]["verification"]
    results = [{k: v for k, v in r.items() if k != "hemolysis_index"} for r in body["results"]]
    answer = lab_client.post("/v1/hl7/verify?lab=testlab", data=message(results, index=str(index_of(body))),
                             content_type=HL7).get_json()
    first, index_obx = answer["observations"]
    assert first["verification"] == wanted and first["verification"]["disposition"] == expected
    assert index_obx["hemolysis_index"] == {"value": float(index_of(body)), "unit": "mg/dL"}


def test_without_the_laboratory_s_index_code_the_obx_is_not_an_index(app, lab_client):
    """The defaults name no index code: the same OBX is an unknown code, and the potassium is released."""
    text = message([k(4.5)], index="600")
    plain = app.test_client().post("/v1/hl7/verify", data=text, content_type=HL7).get_json()["observations"]
    assert plain[0]["verification"]["disposition"] == "release" and "hemolysis_index" not in plain[1]
    held = lab_client.post("/v1/hl7/verify?lab=testlab", data=text, content_type=HL7).get_json()["observations"]
    assert held[0]["verification"]["disposition"] == "hold"


@pytest.mark.parametrize(("index", "unit", "why"), [
    ("600", "g/L", "OBX-6 unit 'g/L' is not the index's unit (mg/dL)"),
    ("lots", "", "OBX-5 is not a number from 0 up"),
    ("-1", "", "OBX-5 is not a number from 0 up"),
])
def test_an_index_that_cannot_be_read_says_why(lab_client, index, unit, why):
    answer = lab_client.post("/v1/hl7/verify?lab=testlab", data=message([k(4.5)], index=index, index_unit=unit),
                             content_type=HL7).get_json()["observations"]
    assert answer[1]["hemolysis_index_not_read"] == why and "hemolysis_index" not in answer[1]
    assert answer[0]["verification"]["disposition"] == "release"


def test_several_indices_in_one_group_the_highest_counts(lab_client):
    text = message([k(4.5)], index="10") + "OBX|9|NM|HI^Haemolysis index^L||600|mg/dL|||||F\r"
    answer = lab_client.post("/v1/hl7/verify?lab=testlab", data=text, content_type=HL7).get_json()["observations"]
    assert answer[0]["verification"]["disposition"] == "hold"
    (reason,) = answer[0]["verification"]["reasons"]
    assert reason["code"] == "hemolysis" and reason["index"] == 600
