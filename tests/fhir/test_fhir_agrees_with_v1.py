"""A FHIR Observation and the equivalent /v1/interpret request agree: flag, grade, symptoms, warnings.

Same value, unit, comparator, age, sex, specimen and sent range; for every analyte the service reads,
across low, normal, high and critical values. Both go through HTTP.
"""

from __future__ import annotations

import itertools

import pytest

from tests.fhir.helpers import bundle, flag, notes, observation, observations, patient, post, validate

DAYS_PER_YEAR = 365.25
# (LOINC, unit, values spanning LL/L/N/H/HH where the data has them)
CASES = [
    ("17861-6", "mg/dL", [5.0, 8.0, 9.5, 10.8, 14.0]),
    ("2000-8", "mmol/L", [1.5, 2.0, 2.35, 2.7, 3.4]),
    ("1995-0", "mmol/L", [0.7, 1.0, 1.25, 1.45, 1.7]),
    ("1994-3", "mmol/L", [0.7, 1.0, 1.25, 1.45, 1.7]),
    ("17864-0", "mg/dL", [3.0, 4.2, 5.0, 5.8, 7.0]),
    ("19123-9", "mg/dL", [0.8, 1.4, 2.0, 2.6, 5.5]),
    ("2601-3", "mmol/L", [0.3, 0.6, 0.9, 1.3, 2.5]),
    ("2823-3", "mmol/L", [2.5, 3.2, 4.2, 5.8, 6.6]),
    ("2823-3", "mEq/L", [2.5, 3.2, 4.2, 5.8, 6.6]),
    ("1751-7", "g/dL", [2.0, 3.0, 4.0, 5.5]),
    ("1751-7", "g/L", [20, 30, 40, 55]),
]
PATIENTS = [("1980-03-01", "female", "2026-03-01"), ("2026-01-01", "male", "2026-02-10"),
            ("1950-05-05", "male", "2026-05-05")]


def v1_result(client, loinc, value, unit, age_days, sex, ref_range=None, comparator=None):
    result = {"analyte": loinc, "value": value, "unit": unit}
    if ref_range:
        result["reference_interval"] = {"low": ref_range[0], "high": ref_range[1]}
    if comparator:
        result["comparator"] = comparator
    response = client.post("/v1/interpret", json={"results": [result], "patient": {"age_days": age_days,
                                                                                    "sex": sex}})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["results"][0]


def fhir_result(client, loinc, value, unit, birth, sex, effective, ref_range=None, comparator=None):
    obs = observation(loinc, value, unit, effective=effective, ref_range=ref_range, comparator=comparator)
    response = post(client, bundle(patient(birth=birth, gender=sex), obs))
    assert response.status_code == 200
    body = response.get_json()
    validate(body)
    return observations(body)[0]


def _age_days(birth, effective):
    import datetime as dt

    return float((dt.date.fromisoformat(effective) - dt.date.fromisoformat(birth)).days)


def _agree(v1, fhir):
    assert flag(fhir) == v1["flag"]
    texts = notes(fhir)
    if v1["ctcae"]:
        assert any(n.startswith(f"CTCAE v5.0 {v1['ctcae']['term']}: grade {v1['ctcae']['grade']} ") for n in texts)
    else:
        assert not any(n.startswith("CTCAE") for n in texts)
    joined = "\n".join(texts)
    for symptom in v1["symptoms"]:
        assert symptom["text"] in joined and symptom["source"] in joined
    if not v1["symptoms"]:
        assert "Symptoms associated" not in joined
    for warning in v1["warnings"]:
        assert f"Warning ({warning['code']}): {warning['text']}" in joined
    assert any(v1["basis"]["rule"] in n for n in texts)


@pytest.mark.parametrize("loinc, unit, values", CASES)
def test_fhir_and_v1_agree(client, loinc, unit, values):
    seen_flags = set()
    for value, (birth, sex, effective) in itertools.product(values, PATIENTS):
        v1 = v1_result(client, loinc, value, unit, _age_days(birth, effective), sex)
        fhir = fhir_result(client, loinc, value, unit, birth, sex, effective)
        _agree(v1, fhir)
        seen_flags.add(v1["flag"])
    assert len(seen_flags) >= 3  # the cases really span several verdicts


def test_agree_with_a_sent_range_and_a_comparator(client):
    birth, sex, effective = PATIENTS[0]
    age = _age_days(birth, effective)
    for value, rr in ((5.4, (3.5, 5.5)), (5.4, (3.5, 5.0)), (3.4, (3.5, 5.0))):
        _agree(v1_result(client, "2823-3", value, "mmol/L", age, sex, rr),
               fhir_result(client, "2823-3", value, "mmol/L", birth, sex, effective, rr))
    for value, comparator in ((2.0, "<"), (7.0, ">"), (3.0, "<")):
        _agree(v1_result(client, "2823-3", value, "mmol/L", age, sex, comparator=comparator),
               fhir_result(client, "2823-3", value, "mmol/L", birth, sex, effective, comparator=comparator))


def test_the_agreement_check_notices_a_difference(client):
    """Same value, different age: the check fails, so it can fail."""
    v1 = v1_result(client, "2823-3", 5.8, "mmol/L", 40.0, "male")  # infant: normal
    fhir = fhir_result(client, "2823-3", 5.8, "mmol/L", "1980-01-01", "male", "2026-01-01")  # adult: high
    with pytest.raises(AssertionError):
        _agree(v1, fhir)


@pytest.mark.parametrize("display, specimen", [("Plasma specimen", "plasma"), ("Serum specimen", "serum")])
def test_agree_on_specimen(client, display, specimen):
    """A high potassium in serum carries the serum warning; in plasma it does not: both doors alike."""
    birth, sex, effective = PATIENTS[0]
    response = client.post("/v1/interpret", json={"results": [{"analyte": "2823-3", "value": 5.6, "unit": "mmol/L",
                                                               "specimen": specimen}],
                                                  "patient": {"age_days": _age_days(birth, effective), "sex": sex}})
    v1 = response.get_json()["results"][0]
    obs = observation("2823-3", 5.6, "mmol/L", effective=effective, specimen=display)
    body = post(client, bundle(patient(birth=birth, gender=sex), obs)).get_json()
    validate(body)
    fhir = observations(body)[0]
    _agree(v1, fhir)
    assert any(w["code"] == "serum_potassium_high" for w in v1["warnings"]) is (specimen == "serum")
