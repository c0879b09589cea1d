"""Both sides of every interval, critical limit and CTCAE edge in the data, one case each.

Values are sent in the canonical unit at the edge a canonical-unit result is compared with (the source's
own figure in that unit family, or the other family's figure at its stated precision: knowledge.EdgeSide),
and at the nearest float on either side, so any off-by-one in an inclusive/exclusive comparison fails here.
"""

from __future__ import annotations

import math

import pytest

from labinterp.core import Patient, load_knowledge
from tests.core.helpers import one

KNOWLEDGE = load_knowledge()
UNIT = {a.id: a.canonical_unit for a in KNOWLEDGE.analytes.values()}


def _age(rule) -> float:
    return rule.age_from + 0.5


def _cases_intervals():
    for analyte, rules in KNOWLEDGE.intervals.items():
        for rule in rules:
            if rule.established:
                yield pytest.param(analyte, rule, id=f"{analyte}-{rule.entry}-{rule.specimens[0]}")


def _cases_critical():
    for analyte, rules in KNOWLEDGE.critical.items():
        for rule in rules:
            yield pytest.param(analyte, rule, id=f"{analyte}-critical-{rule.age_from}")


def _family(analyte: str) -> str:
    return KNOWLEDGE.unit_family(KNOWLEDGE.resolve_unit(UNIT[analyte]) or UNIT[analyte])


def _sides(edge, low: bool) -> tuple[float, float, float]:
    """(at the edge, one float beyond it, one float inside it); beyond is away from the interval."""
    beyond = math.nextafter(edge.value, -math.inf if low else math.inf)
    inside = math.nextafter(edge.value, math.inf if low else -math.inf)
    return edge.value, beyond, inside


@pytest.mark.parametrize("analyte, rule", list(_cases_intervals()))
def test_both_sides_of_every_interval(engine, analyte, rule):
    patient = Patient(age_days=_age(rule), sex=None if rule.sex == "any" else rule.sex)
    specimen = rule.specimens[0]
    family = _family(analyte)
    for edge, low, flag in ((rule.low_edge(family), True, "L"), (rule.high_edge(family), False, "H")):
        if edge is None:
            continue
        at, beyond, inside = _sides(edge, low)
        assert one(engine, analyte, at, UNIT[analyte], patient, specimen=specimen)["flag"] == (
            flag if edge.inclusive else "N")
        assert one(engine, analyte, beyond, UNIT[analyte], patient, specimen=specimen)["flag"] == flag
        assert one(engine, analyte, inside, UNIT[analyte], patient, specimen=specimen)["flag"] == "N"


@pytest.mark.parametrize("analyte, rule", list(_cases_critical()))
def test_both_sides_of_every_critical_limit(engine, analyte, rule):
    patient = Patient(age_days=max(_age(rule), 400.0) if rule.age_to == math.inf else _age(rule) + 14)
    for edge, low, flag in ((rule.low_edge(_family(analyte)), True, "LL"),
                            (rule.high_edge(_family(analyte)), False, "HH")):
        if edge is None:
            continue
        at, beyond, inside = _sides(edge, low)
        assert one(engine, analyte, at, UNIT[analyte], patient)["critical"] == edge.inclusive
        assert one(engine, analyte, beyond, UNIT[analyte], patient)["flag"] == flag
        assert not one(engine, analyte, inside, UNIT[analyte], patient)["critical"]


def _cases_ctcae():
    for (analyte, direction), term in KNOWLEDGE.ctcae.items():
        if analyte == "corrected_calcium":
            continue
        for grade, edge in zip((2, 3, 4), term.grade_edges(_family(analyte)), strict=True):
            if edge is not None:
                yield pytest.param(analyte, direction, grade, edge, term, id=f"{analyte}-{direction}-g{grade}")


@pytest.mark.parametrize("analyte, direction, grade, edge, term", list(_cases_ctcae()))
def test_both_sides_of_every_ctcae_edge(engine, analyte, direction, grade, edge, term):
    def graded(value):
        result = one(engine, analyte, value, UNIT[analyte])
        return result["ctcae"]["grade"] if result["ctcae"] else None

    at, beyond, inside = _sides(edge, direction == "low")
    # inside the edge the value has not passed it; just beyond, it has reached at least this grade
    assert graded(inside) < grade <= graded(beyond)
    assert (graded(at) >= grade) == edge.inclusive
