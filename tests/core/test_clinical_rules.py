"""Issue 12 rules in the engine: each finding on both sides of its rule, through the engine and a door."""

from __future__ import annotations

import pytest

from labinterp.core import Panel, Patient, ResultInput
from labinterp.render import v1 as render_v1
from tests.core.helpers import one

ADULT = Patient(age_days=40 * 365.25)


def panel(engine, *results, patient=ADULT):  # type: ignore[no-untyped-def]
    return render_v1.interpret(engine, Panel(tuple(ResultInput(*r) for r in results), patient))


def codes(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [w["code"] for w in result["warnings"]]


# 1. newborn critical potassium (Kost, Pediatrics 1991): >= 7.8 mmol/L in the first 28 days
@pytest.mark.parametrize("value, flag", [(8.5, "HH"), (7.8, "HH"), (7.7, "H")])
def test_newborn_potassium_has_a_critical_high(engine, value, flag):
    result = one(engine, "potassium", value, "mmol/L", patient=Patient(age_days=1))
    assert result["flag"] == flag and result["critical"] is (flag == "HH")


def test_newborn_critical_potassium_through_the_door(client):
    body = {"results": [{"analyte": "potassium", "value": 8.5, "unit": "mmol/L"}], "patient": {"age_days": 1}}
    result = client.post("/v1/interpret", json=body).get_json()["results"][0]
    assert result["flag"] == "HH" and "1991" in result["critical_limits"]["source"]


# 3. a limit stated in both unit families: each result is compared with the figure of its own family
@pytest.mark.parametrize("value, unit, flag", [(1.65, "mmol/L", "LL"), (1.66, "mmol/L", "L"),
                                               (6.6, "mg/dL", "LL"), (6.7, "mg/dL", "L")])
def test_calcium_critical_low_in_its_own_unit_family(engine, value, unit, flag):
    assert one(engine, "calcium", value, unit, patient=ADULT)["flag"] == flag


# 4. CTCAE's own mmol/L figures: corrected calcium 2.9 mmol/L is grade 1 (pharmaverse admiral grades it 1)
@pytest.mark.parametrize("calcium, grade", [(2.9, 1), (2.91, 2)])
def test_corrected_calcium_is_graded_with_ctcaes_molar_column(engine, calcium, grade):
    answer = panel(engine, ("calcium", calcium, "mmol/L"), ("albumin", 4.0, "g/dL"))
    (derived,) = answer["derived"]
    assert derived["value"]["value"] == pytest.approx(calcium) and derived["ctcae"]["grade"] == grade


# 8. the total calcium lists the symptoms of the corrected classification when one is derived
def test_total_calcium_lists_no_symptoms_when_the_corrected_value_is_normal(engine):
    answer = panel(engine, ("calcium", 8.0, "mg/dL"), ("albumin", 2.0, "g/dL"))
    calcium, (derived,) = answer["results"][0], answer["derived"]
    assert calcium["flag"] == "L" and derived["flag"] == "N" and calcium["symptoms"] == []
    assert "symptoms_of_corrected_calcium" in codes(calcium)


def test_total_calcium_lists_the_symptoms_of_a_low_corrected_value(engine):
    answer = panel(engine, ("calcium", 7.0, "mg/dL"), ("albumin", 3.0, "g/dL"))
    calcium, (derived,) = answer["results"][0], answer["derived"]
    assert derived["classification"] == "hypo" and calcium["symptoms"]
    alone = panel(engine, ("calcium", 8.0, "mg/dL"))["results"][0]
    assert alone["symptoms"] and "symptoms_of_corrected_calcium" not in codes(alone)


# 9. corrected calcium: adults only; a note when albumin is not low
def test_corrected_calcium_is_withheld_for_a_child(engine):
    answer = panel(engine, ("calcium", 8.0, "mg/dL"), ("albumin", 2.0, "g/dL"), patient=Patient(age_days=3 * 365.25))
    assert answer["derived"] == [] and "corrected_calcium_outside_formula" in codes(answer["results"][0])
    adult = panel(engine, ("calcium", 8.0, "mg/dL"), ("albumin", 2.0, "g/dL"))
    assert adult["derived"] and "corrected_calcium_outside_formula" not in codes(adult["results"][0])


def test_corrected_calcium_with_normal_albumin_says_the_formula_is_for_low_albumin(engine):
    normal = panel(engine, ("calcium", 9.0, "mg/dL"), ("albumin", 4.0, "g/dL"))["derived"][0]
    low = panel(engine, ("calcium", 9.0, "mg/dL"), ("albumin", 2.5, "g/dL"))["derived"][0]
    assert "corrected_calcium_albumin_not_low" in codes(normal)
    assert "corrected_calcium_albumin_not_low" not in codes(low)


# 12. pregnancy is not modelled, and the answer says so for a woman of reproductive age
@pytest.mark.parametrize("patient, shown", [
    (Patient(age_days=30 * 365.25, sex="female"), True), (Patient(age_days=30 * 365.25, sex="male"), False),
    (Patient(age_days=60 * 365.25, sex="female"), False), (Patient(age_days=10 * 365.25, sex="female"), False),
])
def test_pregnancy_caveat(engine, patient, shown):
    answer = panel(engine, ("potassium", 4.0, "mmol/L"), patient=patient)
    assert ("pregnancy_not_modelled" in [c["code"] for c in answer["caveats"]]) is shown


def test_pregnancy_caveat_through_the_door(client):
    body = {"results": [{"analyte": "potassium", "value": 4.0, "unit": "mmol/L"}],
            "patient": {"age_years": 30, "sex": "female"}}
    caveats = client.post("/v1/interpret", json=body).get_json()["caveats"]
    assert [c["code"] for c in caveats] == ["pregnancy_not_modelled"] and caveats[0]["source"]
