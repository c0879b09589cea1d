"""Interval selection: age at collection, specimen, sex, laboratory range sent with the result."""

from __future__ import annotations

import pytest

from labinterp.core import Patient, ResultInput, SentInterval
from labinterp.render import v1 as render_v1
from tests.core.helpers import days, one, panel


def test_infant_potassium_uses_infant_interval(engine):
    infant = one(engine, "potassium", 5.8, "mmol/L", patient=Patient(age_days=30))
    assert infant["flag"] == "N"
    assert (infant["reference_interval"]["low"], infant["reference_interval"]["high"]) == (3.4, 6.2)
    assert "Hunterdon" in infant["reference_interval"]["source"]
    adult = one(engine, "potassium", 5.8, "mmol/L", patient=Patient(age_days=days(40)))
    assert adult["flag"] == "H"


# Hunterdon writes its bands "0-7 days; >7days-180 days; >180 days": day 7 belongs to the first
# band and day 180 to the second (the first release put them in the next band).
@pytest.mark.parametrize("age_days, value, flag", [(3, 5.7, "N"), (3, 5.71, "H"), (3, 3.2, "N"), (3, 3.19, "L"),
                                                   (7, 6.2, "H"), (8, 6.2, "N"), (179, 6.2, "N"),
                                                   (180, 5.3, "N"), (181, 5.3, "H")])
def test_newborn_potassium_bands(engine, age_days, value, flag):
    assert one(engine, "potassium", value, "mmol/L", patient=Patient(age_days=age_days))["flag"] == flag


def test_newborn_and_infant_potassium_have_paediatric_critical_limits(engine):
    # Kost 1991: newborns >= 7.8, children >= 6.4 (the first release had no critical high below 180 days)
    newborn = one(engine, "potassium", 8.5, "mmol/L", patient=Patient(age_days=1))
    assert newborn["flag"] == "HH" and newborn["critical"] is True
    assert one(engine, "potassium", 7.79, "mmol/L", patient=Patient(age_days=1))["flag"] == "H"
    infant = one(engine, "potassium", 6.5, "mmol/L", patient=Patient(age_days=30))
    assert infant["flag"] == "HH" and "no_critical_limit" not in [w["code"] for w in infant["warnings"]]
    assert one(engine, "potassium", 6.39, "mmol/L", patient=Patient(age_days=30))["flag"] == "H"
    # the critical low applies to newborns and infants too
    assert one(engine, "potassium", 2.7, "mmol/L", patient=Patient(age_days=30))["flag"] == "LL"
    assert one(engine, "potassium", 2.7, "mmol/L", patient=Patient(age_days=1))["flag"] == "LL"


def test_whole_blood_potassium_has_no_interval(engine):
    result = one(engine, "potassium", 4.0, "mmol/L", specimen="whole_blood")
    assert result["classification"] == "indeterminate" and result["reference_interval"] is None
    assert any(w["code"] == "no_interval" for w in result["warnings"])
    # a critical value is still flagged even where no interval applies
    assert one(engine, "potassium", 2.5, "mmol/L", specimen="whole_blood")["flag"] == "LL"


def test_plasma_and_serum_potassium_differ(engine):
    assert one(engine, "potassium", 3.55, "mmol/L", specimen="plasma")["flag"] == "L"   # Mayo KPS 3.6-5.2
    assert one(engine, "potassium", 3.55, "mmol/L", specimen="serum")["flag"] == "N"    # RCPA 3.5-5.2


def test_specimen_from_the_request_applies_unless_the_result_overrides(engine):
    from labinterp.core import Panel, ResultInput

    body = render_v1.interpret(engine, Panel(results=(ResultInput("potassium", 3.55, "mmol/L"),
                                           ResultInput("potassium", 3.55, "mmol/L", specimen="serum")),
                                  specimen="plasma", patient=Patient(age_days=days(40))))
    assert [r["flag"] for r in body["results"]] == ["L", "N"]


def test_whole_blood_ionized_calcium_loinc_implies_its_specimen(engine):
    result = one(engine, "1994-3", 1.05, "mmol/L")
    assert result["specimen"] == "whole_blood" and result["loinc"] == "1994-3" and result["flag"] == "L"


def test_no_patient_assumes_adult_and_warns(engine):
    result = one(engine, "calcium", 9.0, "mg/dL", patient=None)
    assert "adult_interval_assumed" in [w["code"] for w in result["warnings"]]
    assert result["reference_interval"]["stated"] == {"low": 8.6, "high": 10.0, "unit": "mg/dL"}
    with_age = one(engine, "calcium", 9.0, "mg/dL")
    assert "adult_interval_assumed" not in [w["code"] for w in with_age["warnings"]]


def test_ionized_calcium_by_age(engine):
    assert one(engine, "ionized_calcium", 5.9, "mg/dL", patient=Patient(age_days=100))["flag"] == "N"
    assert one(engine, "ionized_calcium", 5.9, "mg/dL", patient=Patient(age_days=days(30)))["flag"] == "H"
    result = one(engine, "ionized_calcium", 5.0, "mg/dL", patient=Patient(age_days=days(99)))
    assert result["classification"] == "indeterminate"


def test_sent_interval_replaces_the_interval_only(engine):
    result = one(engine, "potassium", 5.8, "mEq/L", interval=(3.5, 5.1, "mmol/L"))
    assert result["flag"] == "H" and result["reference_interval"]["origin"] == "result"
    assert result["reference_interval"]["high"] == 5.1
    assert "interval_from_request" in [w["code"] for w in result["warnings"]]
    # critical limits still come from the data: 6.3 is HH although the sent interval reaches 6.5
    wide = one(engine, "potassium", 6.3, "mmol/L", interval=(3.5, 6.5, "mmol/L"))
    assert wide["flag"] == "HH" and wide["critical_limits"]["origin"] == "default"
    # without a sent interval the same 5.15 is normal by the default (3.5-5.2)
    assert one(engine, "potassium", 5.15, "mmol/L")["flag"] == "N"
    assert one(engine, "potassium", 5.15, "mmol/L", interval=(3.5, 5.1, "mmol/L"))["flag"] == "H"


def test_sent_interval_without_age_says_the_adult_limits_were_assumed(engine):
    def codes(result):
        return [w["code"] for w in result["warnings"]]

    sent = one(engine, "potassium", 5.8, "mmol/L", patient=None, interval=(3.5, 5.1, "mmol/L"))
    assert "adult_limits_assumed" in codes(sent) and "adult_interval_assumed" not in codes(sent)
    assert sent["reference_interval"]["origin"] == "result"
    assert "adult_limits_assumed" not in codes(one(engine, "potassium", 5.8, "mmol/L", interval=(3.5, 5.1, "mmol/L")))
    assert "adult_limits_assumed" not in codes(one(engine, "potassium", 5.8, "mmol/L", patient=None))
    # the corrected calcium of such a calcium is classified against the same sent interval: same warning
    body = panel(engine, [ResultInput("calcium", 7.9, "mg/dL", reference_interval=SentInterval(8.5, 10.2, "mg/dL")),
                          ("albumin", 2.9, "g/dL")], patient=None)
    assert "adult_limits_assumed" in codes(body["derived"][0])
    assert "adult_interval_assumed" not in codes(body["derived"][0])


def test_sent_interval_in_another_unit_is_converted(engine):
    result = one(engine, "calcium", 2.0, "mmol/L", interval=(8.5, 10.2, "mg/dL"))
    assert result["reference_interval"]["low"] == pytest.approx(8.5 * 0.2495134, rel=1e-6)
    assert result["flag"] == "L"


def test_one_sided_sent_interval(engine):
    assert one(engine, "potassium", 5.5, "mmol/L", interval=(None, 5.0, "mmol/L"))["flag"] == "H"
    # issue 13: the missing low bound comes from the service's interval (adult serum 3.5), said in a warning
    low = one(engine, "potassium", 2.9, "mmol/L", interval=(None, 5.0, "mmol/L"))
    assert low["flag"] == "L"
    assert low["reference_interval"]["low"] == pytest.approx(3.5)
    assert low["reference_interval"]["stated"]["low"] is None
    assert "sent_range_completed" in codes(low)
    inside = one(engine, "potassium", 4.0, "mmol/L", interval=(None, 5.0, "mmol/L"))
    assert inside["flag"] == "N" and "sent_range_completed" in codes(inside)


def test_one_sided_sent_range_never_makes_a_high_value_normal(engine):
    """issue 13: potassium 6.1 with {"low": 3.5, "high": null} was N with no grade."""
    result = one(engine, "potassium", 6.1, "mmol/L", interval=(3.5, None, "mmol/L"))
    assert result["flag"] == "H"
    assert result["ctcae"]["grade"] >= 2
    warning = next(w for w in result["warnings"] if w["code"] == "sent_range_completed")
    assert "no high bound" in warning["text"] and "5.2 mmol/L" in warning["text"]
    two_sided = one(engine, "potassium", 6.1, "mmol/L", interval=(3.5, 6.5, "mmol/L"))
    assert two_sided["flag"] == "N" and "sent_range_completed" not in codes(two_sided)


def test_one_sided_sent_range_that_cannot_be_completed_is_not_used(engine):
    # the sent low is above the service's high bound: no consistent range, the service's interval applies
    result = one(engine, "potassium", 5.3, "mmol/L", interval=(5.2, None, "mmol/L"))
    assert "sent_range_not_completed" in codes(result)
    assert result["reference_interval"]["origin"] != "result"
    assert result["flag"] == "H"


def codes(result):
    return [w["code"] for w in result["warnings"]]


def test_ctcae_grades_with_absolute_edges_whatever_the_sent_range(engine):
    """issue 13: a sent range calling 6.1 mmol/L normal does not hide CTCAE grade 3 hyperkalemia (>6.0-7.0)."""
    wide = one(engine, "potassium", 6.1, "mmol/L", interval=(3.5, 7.0, "mmol/L"))
    assert wide["flag"] == "N" and wide["ctcae"]["grade"] == 3 and wide["ctcae"]["term"] == "Hyperkalemia"
    low = one(engine, "potassium", 2.9, "mmol/L", interval=(2.5, 5.0, "mmol/L"))
    assert low["flag"] == "N" and low["ctcae"]["term"] == "Hypokalemia" and low["ctcae"]["grade"] == 3
    # no absolute edge crossed: no grade (grade 1 needs the ULN, which the sent range says is not exceeded)
    assert one(engine, "potassium", 5.4, "mmol/L", interval=(3.5, 5.8, "mmol/L"))["ctcae"] is None
    # the service's own interval keeps its rule: an infant's 5.9 within its interval (3.4-6.2) is not graded
    newborn = one(engine, "potassium", 5.9, "mmol/L", patient=Patient(age_days=30))
    assert newborn["flag"] == "N" and newborn["ctcae"] is None
