"""The v1 JSON door through Flask's test client: the contract and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from tests.test_smoke import EXAMPLE

PROBLEM = "application/problem+json"


def post(client, body, **kwargs):
    if isinstance(body, (dict, list)):
        return client.post("/v1/interpret", json=body, **kwargs)
    return client.post("/v1/interpret", data=body, content_type=kwargs.pop("content_type", "application/json"),
                       **kwargs)


def pointers(response):
    assert response.mimetype == PROBLEM, response.data
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == response.status_code
    return [e["pointer"] for e in body.get("errors", [])]


def test_answer_carries_data_version(client, knowledge):
    body = post(client, EXAMPLE).get_json()
    assert body["data_version"] == knowledge.data_version
    assert body["disclaimer"] and "educational" in body["symptoms_note"]


def test_the_contract_of_one_result(client):
    body = post(client, EXAMPLE).get_json()
    r1 = body["results"][0]
    assert r1["id"] == "r1" and r1["analyte"] == "calcium" and r1["loinc"] == "17861-6"
    assert r1["input"] == {"value": 8.1, "unit": "mg/dL"}
    assert r1["value"]["unit"] == "mmol/L" and r1["value"]["value"] == pytest.approx(2.0210, abs=1e-4)
    ri = r1["reference_interval"]
    assert ri["unit"] == "mmol/L" and ri["origin"] == "default" and ri["source"] and ri["applies_to"]
    assert ri["low"] == pytest.approx(2.15, abs=0.005) and ri["high"] == pytest.approx(2.50, abs=0.005)
    crit = r1["critical_limits"]
    assert crit["low"] == pytest.approx(1.65, abs=0.005) and crit["high"] == pytest.approx(3.22, abs=0.005)
    assert crit["source"]
    assert (r1["classification"], r1["flag"], r1["critical"]) == ("hypo", "L", False)
    # albumin 3.1 g/dL: the corrected calcium (8.8 mg/dL) is normal, so the total calcium lists its symptoms (none)
    assert body["derived"][0]["classification"] == "normal" and r1["symptoms"] == []
    assert "symptoms_of_corrected_calcium" in [w["code"] for w in r1["warnings"]]
    assert r1["basis"]["rule"] and r1["basis"]["conversion"]["factor"] == pytest.approx(0.24951, rel=1e-4)
    potassium = body["results"][3]
    assert potassium["reference_interval"]["origin"] == "result" and potassium["flag"] == "H"
    assert "hemolysis" in [w["code"] for w in potassium["warnings"]]
    assert body["results"][4]["value"] == {"value": pytest.approx(31.0), "unit": "g/L"}
    assert body["derived"][0]["analyte"] == "corrected_calcium" and body["derived"][0]["formula"]


@pytest.mark.parametrize("analyte, expected", [("2823-3", "potassium"), ("17861-6", "calcium"),
                                               ("2000-8", "calcium"), ("19123-9", "magnesium"),
                                               ("1995-0", "ionized_calcium"), ("1751-7", "albumin")])
def test_loinc_codes_are_accepted_and_echoed(client, analyte, expected):
    unit = "g/dL" if expected == "albumin" else "mmol/L"
    result = post(client, {"results": [{"analyte": analyte, "value": 1.0, "unit": unit}]}).get_json()["results"][0]
    assert result["analyte"] == expected and result["loinc"] == analyte


def test_usual_loinc_follows_the_unit_sent(client):
    results = post(client, {"results": [{"analyte": "calcium", "value": 2.3, "unit": "mmol/L"},
                                        {"analyte": "magnesium", "value": 2.0, "unit": "mg/dL"}]}).get_json()
    assert [r["loinc"] for r in results["results"]] == ["2000-8", "19123-9"]


def test_malformed_json_is_400(client):
    response = post(client, b'{"results": [')
    assert response.status_code == 400 and response.mimetype == PROBLEM


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv"])
def test_wrong_content_type_is_415(client, content_type):
    response = post(client, json.dumps(EXAMPLE), content_type=content_type)
    assert response.status_code == 415 and response.mimetype == PROBLEM


@pytest.mark.parametrize("value", ["8.1", True, False, None, [], {}, -1, -0.001])
def test_bad_values_are_422_naming_the_field(client, value):
    response = post(client, {"results": [{"analyte": "calcium", "value": value, "unit": "mg/dL"}]})
    assert response.status_code == 422 and pointers(response) == ["/results/0/value"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_422(client, literal):
    body = '{"results": [{"analyte": "calcium", "value": ' + literal + ', "unit": "mg/dL"}]}'
    response = post(client, body)
    assert response.status_code == 422 and pointers(response) == ["/results/0/value"]


@pytest.mark.parametrize("unit", ["mg", "L", "%", "degC", "mmol", "bananas", "", "__import__('os').getcwd()"])
def test_bad_units_are_422(client, unit):
    response = post(client, {"results": [{"analyte": "magnesium", "value": 1.0, "unit": unit}]})
    assert response.status_code == 422 and pointers(response) == ["/results/0/unit"]


def test_unknown_analyte_is_422(client):
    response = post(client, {"results": [{"analyte": "sodium", "value": 140, "unit": "mmol/L"}]})
    assert response.status_code == 422 and pointers(response) == ["/results/0/analyte"]


@pytest.mark.parametrize("body, expected", [
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL", "units": "x"}]}, ["/results/0/units"]),
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}], "pateint": {}}, ["/pateint"]),
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}], "patient": {"age": 4}}, ["/patient/age"]),
    ({"results": [{"analyte": "calcium", "unit": "mg/dL"}]}, ["/results/0/value"]),
    ({"results": [{"value": 9, "unit": "mg/dL"}]}, ["/results/0/analyte"]),
    ({"results": []}, ["/results"]),
    ({}, ["/results"]),
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}], "specimen": "urine"}, ["/specimen"]),
    ({"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L", "hemolysis": "lots"}]},
     ["/results/0/hemolysis"]),
    ({"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L", "comparator": "=="}]},
     ["/results/0/comparator"]),
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}], "patient": {"sex": "f"}}, ["/patient/sex"]),
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}],
      "patient": {"age_years": 3, "age_days": 1000}}, ["/patient"]),
    ({"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}], "patient": {"age_years": -1}},
     ["/patient/age_years"]),
    ({"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L",
                   "reference_interval": {"low": 5.1, "high": 3.5}}]}, ["/results/0/reference_interval"]),
    ({"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L",
                   "reference_interval": {"low": 3.5, "high": 5.1, "unit": "mg"}}]},
     ["/results/0/reference_interval/unit"]),
    ({"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L", "reference_interval": {}}]},
     ["/results/0/reference_interval"]),
    ({"results": "calcium"}, ["/results"]),
    ([1, 2], [""]),
])
def test_invalid_fields_are_422_and_named(client, body, expected):
    response = post(client, body)
    assert response.status_code == 422
    assert sorted(set(pointers(response))) == expected


def test_the_whole_request_is_refused_when_any_part_is_invalid(client):
    response = post(client, {"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"},
                                         {"analyte": "calcium", "value": 9, "unit": "mg"},
                                         {"analyte": "kalium", "value": 4, "unit": "mmol/L"}]})
    assert response.status_code == 422
    assert pointers(response) == ["/results/1/unit", "/results/2/analyte"]


def test_body_over_the_limit_is_413():
    from labinterp.app import create_app

    small = create_app({"MAX_BODY_BYTES": 512}).test_client()
    response = post(small, {"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL", "id": "x" * 40}] * 20})
    assert response.status_code == 413 and response.mimetype == PROBLEM
    assert post(small, {"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}]}).status_code == 200


def test_absurd_nesting_is_400(client):
    response = post(client, '{"results": ' + "[" * 5000 + "]" * 5000 + "}")
    assert response.status_code == 400 and response.mimetype == PROBLEM
    shallow = post(client, '{"results": [[[[1]]]]}')
    assert shallow.status_code == 422


def test_too_many_results_is_422():
    from labinterp.app import create_app

    limited = create_app({"MAX_RESULTS": 3}).test_client()
    many = {"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L"}] * 4}
    assert post(limited, many).status_code == 422
    assert post(limited, {"results": many["results"][:3]}).status_code == 200
    # /v1/verify answers the same (one answer, http/problems.too_many_results)
    refused = limited.post("/v1/verify", json=many)
    assert refused.status_code == 422 and refused.get_json() == post(limited, many).get_json()
    assert limited.post("/v1/verify", json={"results": many["results"][:3]}).status_code == 200


def test_unknown_lab_is_422(client):
    response = post(client, {"results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}], "lab": "nowhere"})
    assert response.status_code == 422 and pointers(response) == ["/lab"]


def test_405_keeps_allow_and_404_is_a_problem(client):
    response = client.get("/v1/interpret")
    assert response.status_code == 405 and "POST" in response.headers["Allow"] and response.mimetype == PROBLEM
    assert client.get("/v1/nothing-here").mimetype == PROBLEM


def test_analytes_listing(client):
    body = client.get("/v1/analytes").get_json()
    potassium = next(a for a in body["analytes"] if a["id"] == "potassium")
    assert potassium["canonical_unit"] == "mmol/L" and potassium["molar_mass"] == 39.098
    assert potassium["valence"] == 1 and potassium["loinc"][0]["code"] == "2823-3"
    ucum = {u["ucum"] for u in potassium["accepted_units"]}
    assert {"mmol/L", "meq/L", "mg/dL", "umol/L"} <= ucum
    assert body["data_version"]


def test_reference_intervals_listing(client, knowledge):
    body = client.get("/v1/reference-intervals").get_json()
    assert body["data_version"] == knowledge.data_version
    assert all(i["source"] for i in body["intervals"] + body["critical_limits"] + body["implausible_limits"])
    infant = [i for i in body["intervals"] if i["analyte"] == "potassium" and i["age_from_days"] == 7]
    assert infant and infant[0]["stated"]["high"] == 6.2
    assert any(c["analyte"] == "potassium" and c["high_comparison"] == ">=" for c in body["critical_limits"])
    assert {t["term"] for t in body["ctcae"]} >= {"Hypokalemia", "Hypercalcemia"}


def test_openapi_document_and_offline_docs_page(client):
    spec = client.get("/openapi.json").get_json()
    assert "/v1/interpret" in spec["paths"]
    responses = spec["paths"]["/v1/interpret"]["post"]["responses"]
    assert "application/problem+json" in responses["422"]["content"]
    page = client.get("/docs").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_configured_results_limit_above_the_default_is_honoured():
    from labinterp.app import create_app

    roomy = create_app({"MAX_RESULTS": 250}).test_client()
    many = {"results": [{"analyte": "potassium", "value": 4, "unit": "mmol/L"}] * 220}
    assert post(roomy, many).status_code == 200
    assert post(roomy, {"results": many["results"] * 2}).status_code == 422


def test_a_refused_unit_is_one_error_even_with_a_range_in_that_unit(client):
    body = {"results": [{"analyte": "potassium", "value": 4.0, "unit": "banana",
                         "reference_interval": {"low": 3.5, "high": 5.1}}]}
    assert pointers(client.post("/v1/interpret", json=body)) == ["/results/0/unit"]
    own = {"results": [{"analyte": "potassium", "value": 4.0, "unit": "banana",
                        "reference_interval": {"low": 3.5, "high": 5.1, "unit": "kg"}}]}
    assert sorted(pointers(client.post("/v1/interpret", json=own))) == [
        "/results/0/reference_interval/unit", "/results/0/unit"]
