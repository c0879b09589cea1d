"""Both sides of every interval, critical limit and CTCAE edge in the data, one case each.

Values are sent in the canonical unit at the exact bound (as stored after conversion) and at the
nearest float beyond it, so any off-by-one in an inclusive/exclusive comparison fails here.
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


@pytest.mark.parametrize("analyte, rule", list(_cases_intervals()))
def test_both_sides_of_every_interval(engine, analyte, rule):
    patient = Patient(age_days=_age(rule), sex=None if rule.sex == "any" else rule.sex)
    specimen = rule.specimens[0]
    if rule.low is not None:
        assert one(engine, analyte, rule.low, UNIT[analyte], patient, specimen=specimen)["flag"] == "N"
        below = one(engine, analyte, math.nextafter(rule.low, -math.inf), UNIT[analyte], patient, specimen=specimen)
        assert below["flag"] == "L"
    if rule.high is not None:
        assert one(engine, analyte, rule.high, UNIT[analyte], patient, specimen=specimen)["flag"] == "N"
        above = one(engine, analyte, math.nextafter(rule.high, math.inf), UNIT[analyte], patient, specimen=specimen)
        assert above["flag"] == "H"


@pytest.mark.parametrize("analyte, rule", list(_cases_critical()))
def test_both_sides_of_every_critical_limit(engine, analyte, rule):
    patient = Patient(age_days=max(_age(rule), 400.0) if rule.age_to == math.inf else _age(rule) + 14)
    if rule.low is not None:
        at = one(engine, analyte, rule.low, UNIT[analyte], patient)
        assert at["flag"] == ("LL" if rule.low_inclusive else "L")
        inside = one(engine, analyte, math.nextafter(rule.low, math.inf), UNIT[analyte], patient)
        assert inside["flag"] in ("L", None) and not inside["critical"]
    if rule.high is not None:
        at = one(engine, analyte, rule.high, UNIT[analyte], patient)
        assert at["flag"] == ("HH" if rule.high_inclusive else "H")
        inside = one(engine, analyte, math.nextafter(rule.high, -math.inf), UNIT[analyte], patient)
        assert inside["flag"] in ("H", None) and not inside["critical"]


def _cases_ctcae():
    for (analyte, direction), term in KNOWLEDGE.ctcae.items():
        if analyte == "corrected_calcium":
            continue
        for grade, edge in zip((2, 3, 4), term.edges, strict=True):
            yield pytest.param(analyte, direction, grade, edge, term, id=f"{analyte}-{direction}-g{grade}")


@pytest.mark.parametrize("analyte, direction, grade, edge, term", list(_cases_ctcae()))
def test_both_sides_of_every_ctcae_edge(engine, analyte, direction, grade, edge, term):
    def graded(value):
        result = one(engine, analyte, value, UNIT[analyte])
        return result["ctcae"]["grade"] if result["ctcae"] else None

    beyond = math.nextafter(edge, -math.inf if direction == "low" else math.inf)
    # at the edge the value has not passed it; just beyond, it has reached at least this grade
    assert graded(edge) < grade <= graded(beyond)
