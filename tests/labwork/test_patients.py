"""One reading of the patient for every door: sex spellings (service words, HL7 table 0001) and ages."""

from __future__ import annotations

import pytest

from labinterp.core.patients import DAYS_PER_YEAR, patient, sex_of


@pytest.mark.parametrize(("text", "sex"), [
    ("female", "female"), ("MALE", "male"), (" f ", "female"), ("M", "male"), ("o", "other"), ("U", "unknown"),
    ("A", "other"), ("n", "unknown"),
])
def test_sex_spellings_of_the_json_api_and_hl7_are_read(text, sex):
    assert sex_of(text) == sex


@pytest.mark.parametrize("text", ["X", "fem", "", "2"])
def test_other_sex_spellings_are_refused(text):
    assert sex_of(text) is None


def test_age_in_days_wins_and_years_are_marked():
    assert patient(1.0, 30.0).age_days == 30.0 and not patient(1.0, 30.0).age_given_in_years
    years = patient(2.0, None, "female")
    assert years.age_days == 2 * DAYS_PER_YEAR and years.age_given_in_years and years.sex == "female"
    assert patient().age_days is None


def test_the_csv_door_and_hl7_read_sex_alike(lab_client):
    csv = "specimen_id,analyte,value,unit,sex\nS1,potassium,4.0,mmol/L,A\nS2,potassium,4.0,mmol/L,X\n"
    rows = lab_client.post("/v1/interpret/csv", data=csv, content_type="text/csv").get_data(as_text=True)
    lines = rows.strip().splitlines()
    assert "error" in lines[0] and lines[1].count("line ") == 0 and "sex: must be one of" in lines[2]
