"""Unit normalisation: factors derived once with pint, checked against independent figures."""

from __future__ import annotations

import math

import pint
import pytest
from hypothesis import given
from hypothesis import strategies as st

import labinterp.core.units as factor_units
from labinterp.core import InvalidInput, Panel, ResultInput, load_knowledge
from labinterp.render import v1 as render_v1
from tests.core.helpers import one

# Independent figures: clinical chemistry conversion tables (mmol/L = mg/dL x 10 / M, CIAAW atomic
# weights), as collected for the project; four to five significant figures.
MG_DL_TO_MMOL_L = {"calcium": 0.24951, "ionized_calcium": 0.24951, "magnesium": 0.41144, "potassium": 0.25577}
VALENCE = {"calcium": 2, "ionized_calcium": 2, "magnesium": 2, "potassium": 1}


def test_factors_match_independent_figures(knowledge):
    for analyte, figure in MG_DL_TO_MMOL_L.items():
        assert knowledge.factor(analyte, "mg/dL") == pytest.approx(figure, rel=2e-5)
        assert knowledge.factor(analyte, "meq/L") == pytest.approx(1 / VALENCE[analyte])
        assert knowledge.factor(analyte, "umol/L") == pytest.approx(1e-3)
        assert knowledge.factor(analyte, "mg/L") == pytest.approx(figure / 10, rel=2e-5)
    assert knowledge.factor("albumin", "g/dL") == pytest.approx(10.0)
    assert knowledge.factor("albumin", "mg/dL") == pytest.approx(0.01)


def test_factors_equal_those_of_pints_default_registry(knowledge, monkeypatch):
    """The short SI definitions the factors come from give what pint's full default registry gives."""
    monkeypatch.setattr(factor_units, "_registry", pint.UnitRegistry())
    full = load_knowledge()
    assert len(knowledge.factors) >= 30 and full.factors.keys() == knowledge.factors.keys()
    for key, factor in knowledge.factors.items():
        assert factor == pytest.approx(full.factors[key], rel=1e-15), key


def test_a_wrong_factor_would_be_caught(knowledge):
    # the figure check is sensitive: calcium's factor is not magnesium's, nor its valence-free twin
    assert knowledge.factor("calcium", "mg/dL") != pytest.approx(MG_DL_TO_MMOL_L["magnesium"], rel=2e-5)
    assert knowledge.factor("potassium", "meq/L") != pytest.approx(knowledge.factor("calcium", "meq/L"))


@pytest.mark.parametrize("spelling, ucum", [
    ("mg/dL", "mg/dL"), ("mg/dl", "mg/dL"), ("MG/DL", "mg/dL"), ("mg%", "mg/dL"), ("mg/100mL", "mg/dL"),
    ("mmol/L", "mmol/L"), ("MMOL/L", "mmol/L"), ("mmol/l", "mmol/L"), ("mM", "mmol/L"),
    ("umol/L", "umol/L"), ("\u00b5mol/L", "umol/L"), ("\u03bcmol/L", "umol/L"), ("µmol/l", "umol/L"),
    ("meq/L", "meq/L"), ("mEq/L", "meq/L"), ("MEQ/L", "meq/L"), ("mg/L", "mg/L"), ("g/L", "g/L"),
    ("g/dL", "g/dL"), (" mg / dL ", "mg/dL"),
])
def test_real_feed_spellings_map_to_one_ucum_code(knowledge, spelling, ucum):
    assert knowledge.resolve_unit(spelling) == ucum


@pytest.mark.parametrize("spelling", ["mm", "MM", "m", "mg", "L", "%", "degC", "mmol", "mg/dL/dL", "",
                                      "__import__('os').system('true')", "1/0", "mEq"])
def test_unknown_or_ambiguous_spellings_are_refused(knowledge, spelling):
    assert knowledge.resolve_unit(spelling) is None


@pytest.mark.parametrize("unit, code", [("mg", "wrong_dimension"), ("L", "wrong_dimension"),
                                        ("%", "wrong_dimension"), ("degC", "wrong_dimension"),
                                        ("furlongs/fortnight!", "unknown_unit"),
                                        ("__import__('os')", "unknown_unit")])
def test_engine_refuses_units_with_the_reason(engine, unit, code):
    with pytest.raises(InvalidInput) as caught:
        render_v1.interpret(engine, Panel(results=(ResultInput("calcium", 9.0, unit),)))
    (error,) = caught.value.errors
    assert error.pointer == "/results/0/unit" and error.code == code


def test_albumin_refuses_molar_and_equivalent_units(engine):
    for unit in ("mmol/L", "mEq/L"):
        with pytest.raises(InvalidInput) as caught:
            render_v1.interpret(engine, Panel(results=(ResultInput("albumin", 3.0, unit),)))
        assert caught.value.errors[0].code == "incompatible_unit"


def test_requests_never_touch_pint(engine, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pint used on the request path")

    monkeypatch.setattr(pint.UnitRegistry, "Quantity", property(refuse))
    monkeypatch.setattr(pint.UnitRegistry, "parse_units", refuse)
    result = one(engine, "calcium", 8.1, "mg/dL")
    assert result["value"]["value"] == pytest.approx(8.1 * 0.2495134, rel=1e-6)


def test_potassium_meq_uses_valence_one_and_calcium_valence_two(engine):
    assert one(engine, "potassium", 5.8, "mEq/L")["value"]["value"] == pytest.approx(5.8)
    assert one(engine, "calcium", 5.0, "mEq/L")["value"]["value"] == pytest.approx(2.5)


units = st.sampled_from(["mg/dL", "mg/L", "g/L", "g/dL", "mmol/L", "umol/L", "meq/L"])
analytes = st.sampled_from(["calcium", "ionized_calcium", "magnesium", "potassium"])


@given(analytes, units, units, st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_round_trip_between_any_two_units(knowledge, analyte, unit_a, unit_b, value):
    canonical = value * knowledge.factor(analyte, unit_a)
    in_b = canonical / knowledge.factor(analyte, unit_b)
    back = in_b * knowledge.factor(analyte, unit_b) / knowledge.factor(analyte, unit_a)
    assert math.isclose(back, value, rel_tol=1e-12)


@given(analytes, st.floats(min_value=1e-3, max_value=1e3, allow_nan=False))
def test_mass_to_molar_follows_molar_mass(knowledge, analyte, value):
    molar_mass = knowledge.analytes[analyte].molar_mass
    assert math.isclose(value * knowledge.factor(analyte, "mg/dL"), value * 10 / molar_mass, rel_tol=1e-12)


def test_canonical_value_is_unrounded(engine):
    result = one(engine, "calcium", 8.1, "mg/dL")
    assert math.isclose(result["value"]["value"], 8.1 * 10 / 40.078, rel_tol=1e-12)
    assert result["value"]["value"] != round(result["value"]["value"], 4)


def test_unlisted_concentration_spelling_is_unknown_not_wrong_dimension(engine):
    with pytest.raises(InvalidInput) as caught:
        render_v1.interpret(engine, Panel(results=(ResultInput("calcium", 2.3, "mmol/litre"),)))
    (error,) = caught.value.errors
    assert error.code == "unknown_unit" and "not a concentration" not in error.reason
