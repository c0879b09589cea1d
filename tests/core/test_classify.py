"""Classification: both sides of every interval and critical edge, implausible and off-scale values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labinterp.core import Patient
from tests.core.helpers import ADULT, days, one

RANK = {"LL": 0, "L": 1, "N": 2, "H": 3, "HH": 4}


@pytest.mark.parametrize("analyte, value, unit, flag", [
    # potassium, adult: Kost 1990 <=2.8 / >=6.2 mmol/L
    ("potassium", 2.8, "mmol/L", "LL"), ("potassium", 2.81, "mmol/L", "L"),
    ("potassium", 6.2, "mmol/L", "HH"), ("potassium", 6.19, "mmol/L", "H"),
    # total calcium: Kost 1990 <=6.6 / >=12.9 mg/dL
    ("calcium", 6.6, "mg/dL", "LL"), ("calcium", 6.61, "mg/dL", "L"),
    ("calcium", 12.9, "mg/dL", "HH"), ("calcium", 12.89, "mg/dL", "H"),
    # ionized calcium: MLO <=0.82 / >=1.55 mmol/L
    ("ionized_calcium", 0.82, "mmol/L", "LL"), ("ionized_calcium", 0.83, "mmol/L", "L"),
    ("ionized_calcium", 1.55, "mmol/L", "HH"), ("ionized_calcium", 1.54, "mmol/L", "H"),
    # magnesium: MLO <=1.0 / >=4.9 mg/dL
    ("magnesium", 1.0, "mg/dL", "LL"), ("magnesium", 1.01, "mg/dL", "L"),
    ("magnesium", 4.9, "mg/dL", "HH"), ("magnesium", 4.89, "mg/dL", "H"),
])
def test_critical_edges(engine, analyte, value, unit, flag):
    result = one(engine, analyte, value, unit)
    assert result["flag"] == flag
    assert result["critical"] is (flag in ("LL", "HH"))
    assert result["classification"] == ("hypo" if flag in ("LL", "L") else "hyper")


@pytest.mark.parametrize("analyte, value, unit, flag", [
    ("potassium", 3.5, "mmol/L", "N"), ("potassium", 3.49, "mmol/L", "L"),
    ("potassium", 5.2, "mmol/L", "N"), ("potassium", 5.21, "mmol/L", "H"),
    ("calcium", 8.6, "mg/dL", "N"), ("calcium", 8.59, "mg/dL", "L"),
    ("calcium", 10.0, "mg/dL", "N"), ("calcium", 10.01, "mg/dL", "H"),
    ("magnesium", 0.7, "mmol/L", "N"), ("magnesium", 0.69, "mmol/L", "L"),
    ("magnesium", 1.1, "mmol/L", "N"), ("magnesium", 1.11, "mmol/L", "H"),
    ("albumin", 35, "g/L", "N"), ("albumin", 34.9, "g/L", "L"), ("albumin", 3.5, "g/dL", "N"),
    ("albumin", 50, "g/L", "N"), ("albumin", 50.1, "g/L", "H"),
])
def test_interval_edges_are_inclusive(engine, analyte, value, unit, flag):
    assert one(engine, analyte, value, unit)["flag"] == flag


def test_classification_uses_the_unrounded_value(engine):
    # 8.6 mg/dL is the interval's own low bound: normal; the smallest step below is low, although
    # both round to the same 2.15 mmol/L
    assert one(engine, "calcium", 8.6, "mg/dL")["flag"] == "N"
    assert one(engine, "calcium", 8.5999, "mg/dL")["flag"] == "L"


def test_implausible_value_is_indeterminate(engine):
    result = one(engine, "potassium", 25, "mmol/L")
    assert result["classification"] == "indeterminate" and result["flag"] is None
    assert result["critical"] is False and result["symptoms"] == []
    assert [w["code"] for w in result["warnings"]] == ["implausible"]
    # at the implausible limit itself, the value is still read as real
    assert one(engine, "potassium", 15, "mmol/L")["flag"] == "HH"
    assert one(engine, "potassium", 1.0, "mmol/L")["flag"] == "LL"
    assert one(engine, "potassium", 0.9, "mmol/L")["classification"] == "indeterminate"


@pytest.mark.parametrize("comparator, value, flag, reason", [
    ("<", 1.5, "LL", None),       # the whole range lies below the critical low 2.8
    ("<", 2.8, "LL", None),       # every value below 2.8 is <= 2.8
    ("<=", 2.8, "LL", None),
    ("<", 2.81, "L", None),       # 2.805 is only L, 2.7 is LL: the whole range is low, not all critical
    ("<=", 2.81, "L", None),
    ("<", 3.0, "L", None),        # every value below 3.0 is below the interval 3.5-5.2
    ("<", 3.5, "L", None),        # ... and below 3.5 too (the interval is inclusive)
    ("<=", 3.5, None, "off_scale"),  # 3.5 itself is normal: the range straddles the edge
    ("<", 4.0, None, "off_scale"),
    (">", 10, "HH", None),
    (">=", 6.2, "HH", None),
    (">", 6.2, "HH", None),
    (">", 6.19, "H", None),       # 6.195 is only H
    (">", 6.0, "H", None),        # every value above 6.0 is above the interval
    (">", 5.2, "H", None),
    (">=", 5.2, None, "off_scale"),  # 5.2 itself is normal
    (">", 1.0, None, "off_scale"),  # open upwards: never low
    (">=", 15, "HH", None),       # 15 is plausible (and critical); above it, implausible
    (">", 15, None, "implausible"),  # the whole range is beyond the implausible limit, as a plain 16 is
    ("<", 1.0, None, "implausible"),
    ("<=", 1.0, "LL", None),
])
def test_off_scale_results(engine, comparator, value, flag, reason):
    result = one(engine, "potassium", value, "mmol/L", comparator=comparator, patient=Patient(age_days=40 * 365.25))
    assert result["flag"] == flag
    assert result["classification_reason"] == reason
    assert result["critical"] is (flag in ("LL", "HH"))
    assert result["value"]["comparator"] == comparator
    if flag is not None:
        assert "whole range" in result["basis"]["rule"]


def test_no_interval_is_indeterminate_with_the_reason(engine):
    result = one(engine, "ionized_calcium", 1.2, "mmol/L", patient=Patient(age_days=10))
    assert result["classification"] == "indeterminate" and result["flag"] is None
    assert result["reference_interval"] is None
    (warning,) = [w for w in result["warnings"] if w["code"] == "no_interval"]
    assert "13 days" in warning["text"]


def test_normal_result_has_no_symptoms_and_no_grade(engine):
    result = one(engine, "magnesium", 0.9, "mmol/L")
    assert result["flag"] == "N" and result["symptoms"] == [] and result["ctcae"] is None


def _flag(engine, analyte, value):
    return one(engine, analyte, value, "mmol/L", patient=ADULT)["flag"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([("potassium", 1.0, 15.0), ("magnesium", 0.0823, 8.2), ("ionized_calcium", 0.2, 3.0),
                        ("calcium", 0.5, 6.2)]),
       st.floats(0, 1), st.floats(0, 1))
def test_classification_is_monotonic_over_the_plausible_range(engine, case, a, b):
    analyte, lowest, highest = case
    v1, v2 = sorted((lowest + a * (highest - lowest), lowest + b * (highest - lowest)))
    assert RANK[_flag(engine, analyte, v1)] <= RANK[_flag(engine, analyte, v2)]


def test_age_band_changes_the_verdict(engine):
    # total calcium 10.8 mg/dL: normal under 1 year (8.7-11.0), high at 30 years (8.6-10.0)
    assert one(engine, "calcium", 10.8, "mg/dL", patient=Patient(age_days=days(0.5)))["flag"] == "N"
    assert one(engine, "calcium", 10.8, "mg/dL", patient=Patient(age_days=days(30)))["flag"] == "H"
    # 10.1 mg/dL: high at 59 years (upper 10.0), normal at 60 (upper 10.2)
    assert one(engine, "calcium", 10.1, "mg/dL", patient=Patient(age_days=days(59.9)))["flag"] == "H"
    assert one(engine, "calcium", 10.1, "mg/dL", patient=Patient(age_days=days(60)))["flag"] == "N"
