"""Findings across analytes and albumin-corrected calcium."""

from __future__ import annotations

import pytest

from tests.core.helpers import panel


def ids(body):
    return {p["id"] for p in body["patterns"]}


def test_low_magnesium_with_low_potassium(engine):
    body = panel(engine, [("magnesium", 0.5, "mmol/L"), ("potassium", 3.0, "mmol/L")])
    assert "low_magnesium_low_potassium" in ids(body)
    (pattern,) = [p for p in body["patterns"] if p["id"] == "low_magnesium_low_potassium"]
    assert "Huang" in pattern["source"] and {r["analyte"] for r in pattern["results"]} == {"magnesium", "potassium"}
    assert "low_magnesium_low_potassium" not in ids(panel(engine, [("magnesium", 0.5, "mmol/L"),
                                                                   ("potassium", 4.0, "mmol/L")]))
    assert "low_magnesium_low_potassium" not in ids(panel(engine, [("magnesium", 0.8, "mmol/L"),
                                                                   ("potassium", 3.0, "mmol/L")]))


def test_low_magnesium_with_low_ionized_calcium(engine):
    body = panel(engine, [("magnesium", 0.5, "mmol/L"), ("ionized_calcium", 1.0, "mmol/L")])
    assert "low_magnesium_low_calcium" in ids(body)


def test_calcium_status_prefers_corrected_over_total(engine):
    # total 8.0 mg/dL is low, but with albumin 2.5 g/dL the corrected calcium is 9.2 mg/dL: normal
    body = panel(engine, [("magnesium", 0.5, "mmol/L"), ("calcium", 8.0, "mg/dL"), ("albumin", 2.5, "g/dL")])
    assert body["derived"][0]["flag"] == "N"
    assert "low_magnesium_low_calcium" not in ids(body)
    assert "low_albumin_low_total_calcium" in ids(body)


def test_corrected_calcium_formula_and_inputs(engine):
    body = panel(engine, [("calcium", 8.0, "mg/dL", "ca"), ("albumin", 30, "g/L", "alb")])
    (derived,) = body["derived"]
    # 8.0 + 0.8 x (4.0 - 3.0) = 8.8 mg/dL; the SI form gives 1.996 + 0.02 x 10 = 2.196 mmol/L
    assert derived["value"]["value"] == pytest.approx(8.8 * 0.2495134, rel=1e-6)
    assert derived["value"]["value"] == pytest.approx(1.996 + 0.02 * 10, abs=0.002)
    assert derived["loinc"] == "29265-6" and "0.8" in derived["formula"]
    assert [d["id"] for d in derived["derived_from"]] == ["ca", "alb"]
    assert derived["reference_interval"]["source"] == body["results"][0]["reference_interval"]["source"]
    assert "corrected_calcium_limitations" in [w["code"] for w in derived["warnings"]]


def test_no_corrected_calcium_without_albumin_or_off_scale(engine):
    assert panel(engine, [("calcium", 8.0, "mg/dL")])["derived"] == []
    assert panel(engine, [("calcium", 8.0, "mg/dL"), ("albumin", 1.0, "g/dL", None, "<")])["derived"] == []


def test_implausible_input_gives_no_corrected_calcium(engine):
    body = panel(engine, [("calcium", 8.0, "mg/dL"), ("albumin", 200, "g/L")])
    assert body["derived"] == []
    assert "no_corrected_calcium" in [w["code"] for w in body["results"][0]["warnings"]]
