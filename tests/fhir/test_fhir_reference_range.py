"""The referenceRange the FHIR door adds carries age and sex qualifiers from the interval rule used."""

from __future__ import annotations

import dataclasses

from labinterp.core import Engine, Panel, Patient, ResultInput
from labinterp.fhirio.writer import Writer
from labinterp.render import v1 as render_v1


def _with_sex_specific_potassium(knowledge):
    rules = tuple(dataclasses.replace(r, sex="female") if r.adult_default or r.age_from >= 365.25 else r
                  for r in knowledge.intervals["potassium"])
    return dataclasses.replace(knowledge, intervals={**knowledge.intervals, "potassium": rules})


def _range(knowledge, sex, age_days):
    outcome = Engine(knowledge).interpret(Panel((ResultInput("2823-3", 4.0, "mmol/L"),),
                                                Patient(age_days=age_days, sex=sex)))
    result = render_v1.answer(outcome)["results"][0]
    return Writer(knowledge).reference_range(result, outcome.results[0], "mmol/L")


def test_sex_specific_interval_gets_applies_to(knowledge):
    female = _with_sex_specific_potassium(knowledge)
    assert _range(female, "female", 40 * 365.25)["appliesTo"] == [{"text": "female"}]
    assert "appliesTo" not in _range(knowledge, "female", 40 * 365.25)


def test_age_band_in_years_or_days(knowledge):
    adult = _range(knowledge, "male", 40 * 365.25)
    assert adult["age"]["low"] == {"value": 18, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}
    assert "high" not in adult["age"]  # open-ended band
    infant = _range(knowledge, "male", 30.0)
    assert infant["age"]["low"]["code"] == "d" and infant["age"]["low"]["value"] == 7
    assert infant["age"]["high"]["value"] == 180
    assert "over 7 days to 180 days" in infant["text"]  # Hunterdon's ">7days-180 days" (day 180 included)
