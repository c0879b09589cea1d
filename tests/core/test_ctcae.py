"""CTCAE v5.0 laboratory grades: both sides of every edge, exact conversion, abnormal results only."""

from __future__ import annotations

import pytest

from labinterp.core import Patient
from tests.core.helpers import one, panel


def grade(result):
    return None if result["ctcae"] is None else result["ctcae"]["grade"]


@pytest.mark.parametrize("value, expected", [
    (3.49, 1), (3.0, 1), (2.99, 3), (2.5, 3), (2.49, 4),          # hypokalemia (grade 2 = symptomatic)
    (5.21, 1), (5.5, 1), (5.51, 2), (6.0, 2), (6.01, 3), (7.0, 3), (7.01, 4),  # hyperkalemia
])
def test_potassium_grades(engine, value, expected):
    assert grade(one(engine, "potassium", value, "mmol/L")) == expected


@pytest.mark.parametrize("value, expected", [
    (1.68, 1), (1.2, 1), (1.19, 2), (0.9, 2), (0.89, 3), (0.7, 3), (0.69, 4),   # hypomagnesemia, mg/dL
    (2.7, 1), (3.0, 1), (3.01, 3), (8.0, 3), (8.01, 4),                         # hypermagnesemia: no grade 2
])
def test_magnesium_grades_use_mg_dl_edges(engine, value, expected):
    assert grade(one(engine, "magnesium", value, "mg/dL")) == expected


def test_a_molar_result_is_graded_with_ctcaes_own_molar_figures(engine):
    # CTCAE prints 3.0 mg/dL beside 1.23 mmol/L (3.0 mg/dL is 1.2343 mmol/L): a result in mmol/L is graded
    # with the mmol/L column as printed, so 1.233 mmol/L is grade 3 and 1.23 mmol/L is grade 1.
    assert grade(one(engine, "magnesium", 1.233, "mmol/L")) == 3
    assert grade(one(engine, "magnesium", 1.23, "mmol/L")) == 1
    assert grade(one(engine, "magnesium", 3.0, "mg/dL")) == 1 and grade(one(engine, "magnesium", 3.01, "mg/dL")) == 3


def test_magnesium_at_a_converted_edge_is_compared_at_the_edges_precision(engine):
    # 1.7 mg/dL is 0.6994 mmol/L: at the two decimals of the interval's 0.70 it is 0.70, inside (issue 12, item 5)
    normal = one(engine, "magnesium", 1.7, "mg/dL")
    assert normal["flag"] == "N"
    [low_edge] = [e for e in normal["basis"]["compared_with"] if e["figure"] == "interval low"]
    assert low_edge["precision_adjusted"] and low_edge["stated"] == "0.70" and low_edge["decimals"] == 2
    assert one(engine, "magnesium", 1.68, "mg/dL")["flag"] == "L"  # 0.6912 is 0.69 at two decimals


@pytest.mark.parametrize("value, expected", [
    (1.1, 1), (1.0, 1), (0.99, 2), (0.9, 2), (0.89, 3), (0.8, 3), (0.79, 4),
    (1.4, 1), (1.5, 1), (1.51, 2), (1.6, 2), (1.61, 3), (1.8, 3), (1.81, 4),
])
def test_ionized_calcium_grades(engine, value, expected):
    assert grade(one(engine, "ionized_calcium", value, "mmol/L")) == expected


@pytest.mark.parametrize("calcium, expected", [(8.0, 1), (7.99, 2), (7.0, 2), (6.99, 3), (11.5, 1), (11.51, 2),
                                               (12.5, 2), (12.51, 3), (13.5, 3), (13.51, 4)])
def test_total_calcium_is_graded_through_corrected_calcium(engine, calcium, expected):
    body = panel(engine, [("calcium", calcium, "mg/dL"), ("albumin", 4.0, "g/dL")])
    (corrected,) = body["derived"]
    assert corrected["value"]["value"] == pytest.approx(calcium * 0.2495134, rel=1e-6)
    assert grade(corrected) == expected
    assert body["results"][0]["ctcae"] is None
    assert "ctcae_graded_on_corrected" in [w["code"] for w in body["results"][0]["warnings"]]


def test_total_calcium_without_albumin_has_no_grade_and_says_why(engine):
    result = one(engine, "calcium", 7.5, "mg/dL")
    assert result["ctcae"] is None
    assert "ctcae_needs_albumin" in [w["code"] for w in result["warnings"]]


def test_value_inside_its_own_interval_has_no_grade(engine):
    # 5.8 mmol/L is above the CTCAE 5.5 edge but normal for a one-month-old (3.4-6.2)
    result = one(engine, "potassium", 5.8, "mmol/L", patient=Patient(age_days=30))
    assert result["flag"] == "N" and result["ctcae"] is None


def test_grade_says_it_is_laboratory_only(engine):
    ctcae = one(engine, "potassium", 6.5, "mmol/L")["ctcae"]
    assert ctcae["laboratory_only"] is True and ctcae["version"] == "5.0" and ctcae["term"] == "Hyperkalemia"
    assert ctcae["edges"]["unit"] == "mmol/L" and "CTCAE" in ctcae["source"]
