"""Warnings: haemolysis, serum potassium, low albumin, adult interval assumed, infant age in years."""

from __future__ import annotations

import pytest

from labinterp.core import Patient
from labinterp.render import v1 as render_v1
from tests.core.helpers import one, panel


def codes(result):
    return [w["code"] for w in result["warnings"]]


@pytest.mark.parametrize("hemolysis", ["slight", "moderate", "gross"])
def test_hemolysis_warns_without_changing_flag(engine, hemolysis):
    clean = one(engine, "potassium", 5.8, "mmol/L", specimen="plasma", hemolysis="none")
    haemolysed = one(engine, "potassium", 5.8, "mmol/L", specimen="plasma", hemolysis=hemolysis)
    assert haemolysed["flag"] == clean["flag"] == "H"
    assert haemolysed["classification"] == clean["classification"]
    assert "hemolysis" in codes(haemolysed) and "hemolysis" not in codes(clean)
    assert hemolysis in next(w["text"] for w in haemolysed["warnings"] if w["code"] == "hemolysis")


def test_hemolysis_is_reported_on_potassium_only(engine):
    assert "hemolysis" not in codes(one(engine, "calcium", 9.0, "mg/dL", hemolysis="gross"))


def test_high_serum_potassium_warns_of_pseudohyperkalemia(engine):
    assert "serum_potassium_high" in codes(one(engine, "potassium", 5.6, "mmol/L", specimen="serum"))
    assert "serum_potassium_high" not in codes(one(engine, "potassium", 5.6, "mmol/L", specimen="plasma"))
    assert "serum_potassium_high" not in codes(one(engine, "potassium", 4.0, "mmol/L", specimen="serum"))


def test_low_albumin_warns_on_total_calcium(engine):
    body = panel(engine, [("calcium", 8.0, "mg/dL"), ("albumin", 2.5, "g/dL")])
    assert "low_albumin" in codes(body["results"][0])
    normal_albumin = panel(engine, [("calcium", 8.0, "mg/dL"), ("albumin", 4.0, "g/dL")])
    assert "low_albumin" not in codes(normal_albumin["results"][0])


def test_age_in_years_for_an_infant_warns(engine):
    from labinterp.core import Panel, ResultInput

    body = render_v1.interpret(engine, Panel(results=(ResultInput("potassium", 5.0, "mmol/L"),),
                                  patient=Patient(age_days=0.5 * 365.25, age_given_in_years=True)))
    assert "age_in_years_infant" in codes(body["results"][0])
    assert "age_in_years_infant" not in codes(one(engine, "potassium", 5.0, "mmol/L",
                                                  patient=Patient(age_days=180)))


def test_every_warning_has_text_and_sourced_facts_name_their_source(engine):
    body = panel(engine, [("calcium", 7.0, "mg/dL"), ("albumin", 2.0, "g/dL"),
                          ("potassium", 25, "mmol/L"), ("potassium", 5.9, "mmol/L", None, None, None, "gross")],
                 patient=None)
    for result in body["results"] + body["derived"]:
        for warning in result["warnings"]:
            assert warning["text"] and "{" not in warning["text"]
            if warning["code"] in ("hemolysis", "serum_potassium_high", "low_albumin", "implausible"):
                assert warning["source"]
