"""The service answers the issue's example request."""

EXAMPLE = {
    "results": [
        {"id": "r1", "analyte": "calcium", "value": 8.1, "unit": "mg/dL"},
        {"analyte": "ionized_calcium", "value": 1.05, "unit": "mmol/L", "specimen": "whole_blood"},
        {"analyte": "magnesium", "value": 0.55, "unit": "mmol/L"},
        {"analyte": "potassium", "value": 5.8, "unit": "mEq/L", "hemolysis": "moderate",
         "reference_interval": {"low": 3.5, "high": 5.1, "unit": "mmol/L"}},
        {"analyte": "albumin", "value": 3.1, "unit": "g/dL"},
    ],
    "patient": {"age_years": 54, "sex": "female"},
    "specimen": "serum",
}


def test_example_request(client):
    response = client.post("/v1/interpret", json=EXAMPLE)
    assert response.status_code == 200
    body = response.get_json()
    flags = [r["flag"] for r in body["results"]]
    assert flags == ["L", "L", "L", "H", "L"]
    assert body["derived"][0]["analyte"] == "corrected_calcium"
    assert {p["id"] for p in body["patterns"]} >= {"low_magnesium_low_calcium"}
