"""Refused units are named from a table built at start-up: no unit text reaches pint at request time."""

from __future__ import annotations

import pytest

from labinterp.core import InvalidInput, Panel, ResultInput
from labinterp.core.units import describe_dimension, dimension_table


@pytest.mark.parametrize("spelling, kind", [
    ("mg", "mass"), ("kg", "mass"), ("\u00b5g", "mass"), ("grams", "mass"), ("mL", "volume"),
    ("dL", "volume"), ("L", "volume"), ("degC", "temperature"), ("mmol", "amount_of_substance"),
    ("%", "dimensionless"), ("cm", "length"), ("min", "time"), ("cd", "luminous_intensity"),
])
def test_single_units_are_named_by_their_kind(spelling, kind):
    assert describe_dimension(spelling) == kind


@pytest.mark.parametrize("spelling", [
    "m^9^9^9", "cd**9**9**7", "mol^9^9^7", "mol\\S\\9\\S\\9\\S\\7", "10**10**10", "m" * 10_000,
    "mg/dL", "mmol/litre", "g/L", "furlongs/fortnight!", "__import__('os')", "",
])
def test_expressions_concentrations_and_nonsense_are_not_described(spelling):
    assert describe_dimension(spelling) is None


def test_every_kind_has_words_that_are_a_noun_phrase_never_a_verdict(knowledge):
    """The engine writes "'x' is {kind}, not a concentration": a kind saying so itself doubled it."""
    kinds = set(dimension_table().values()) | {"other"}
    words = [knowledge.words[f"dimension.{kind}"] for kind in kinds]
    assert words and all(w.startswith(("a ", "an ")) and "concentration" not in w for w in words)


def test_a_unit_of_another_dimension_says_not_a_concentration_once(engine):
    with pytest.raises(InvalidInput) as caught:
        engine.interpret(Panel(results=(ResultInput("calcium", 9.0, "Pa"),)))
    (error,) = caught.value.errors
    assert error.code == "wrong_dimension" and error.reason.count("not a concentration") == 1
    assert error.reason.startswith("'Pa' is a quantity of another kind, not a concentration;")


def test_expression_units_are_unknown_units_on_the_engine(engine):
    for unit in ("m^9^9^9", "cd**9**9**7"):
        with pytest.raises(InvalidInput) as caught:
            engine.interpret(Panel(results=(ResultInput("calcium", 9.0, unit),)))
        (error,) = caught.value.errors
        assert error.code == "unknown_unit" and "not a concentration" not in error.reason
