"""The interpretation rules, each written once: every door and the file path apply these functions.

Selection (interval, critical limits), classification and grading (`classify_columns`), the notes of
one result, corrected calcium (the pair and the formula) and the panel rules (corrected-calcium notes,
low albumin, CTCAE on calcium, combined patterns). The file path applies the scalar rules once per
distinct key (selection x verdict; panel signature) and broadcasts the answer over its rows.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from labinterp.core.frozen import frozen
from labinterp.core.knowledge import (
    ComparisonEdge,
    CorrectedCalcium,
    Critical,
    CtcaeTerm,
    Interval,
    Knowledge,
    Pattern,
    format_age,
)
from labinterp.core.model import Patient
from labinterp.core.outcomes import Note, SentRange

ADULT_AGE_DAYS = 30 * 365.25  # used to pick age-banded limits when no age is given
CTCAE_VERSION = "5.0"
HEMOLYSED = ("slight", "moderate", "gross", "degree_not_stated")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]
Number = TypeVar("Number", float, FloatArray)


# ------------------------------------------------------------------ selection
@frozen
class Selection:
    """The interval chosen for one result (None: no interval, with the data's reason) and the notes
    the choice gives (age assumed, age in years for an infant)."""

    interval: Interval | None
    reason: str | None
    notes: tuple[Note, ...]


def limits_analyte(analyte: str) -> str:
    """Corrected calcium is checked against total calcium's implausible limits."""
    return "calcium" if analyte == "corrected_calcium" else analyte


def _infant_age_in_years(patient: Patient) -> tuple[Note, ...]:
    if patient.age_days is not None and patient.age_given_in_years and patient.age_days < 365.25:
        return (Note("age_in_years_infant"),)
    return ()


def select_interval(k: Knowledge, analyte: str, specimen: str, patient: Patient) -> Selection:
    """The reference interval that applies to one result, from the data (or the laboratory profile)."""
    rules = k.intervals.get(analyte, ())
    if patient.age_days is None:
        chosen = next((r for r in rules if r.adult_default and specimen in r.specimens
                       and (r.sex == "any" or r.sex == patient.sex)), None)
        if chosen is not None:
            return Selection(chosen, None, (Note("adult_interval_assumed"),))
        return Selection(None, k.words["phrase.no_adult_interval"].format(
            analyte=analyte, specimen=specimen.replace("_", " ")), ())
    notes = _infant_age_in_years(patient)
    for rule in rules:
        if rule.applies(specimen, patient.sex, patient.age_days):
            if not rule.established:
                return Selection(None, rule.reason, notes)
            return Selection(rule, None, notes)
    return Selection(None, k.words["phrase.no_interval_at_age"].format(
        analyte=analyte, specimen=specimen.replace("_", " "), age=format_age(k.words, patient.age_days)), notes)


def sent_range_notes(patient: Patient) -> tuple[Note, ...]:
    """A range sent with the result replaces the interval only: the limits still depend on age."""
    return _infant_age_in_years(patient) + ((Note("adult_limits_assumed"),) if patient.age_days is None else ())


def complete_sent_range(sent: SentRange, selection: Selection) -> tuple[SentRange | None, Note | None]:
    """A range sent with one bound never makes a clearly abnormal value normal: the bound the sender left
    out comes from the service's interval (profile or defaults). (None, note): it cannot be completed
    consistently, so the service's own interval applies instead."""
    if sent.low is not None and sent.high is not None:
        return sent, None
    missing = "low" if sent.low is None else "high"
    rule = selection.interval
    bound = None if rule is None else (rule.low if missing == "low" else rule.high)
    given = sent.high if missing == "low" else sent.low
    if bound is None or given is None or (bound >= given if missing == "low" else bound <= given):
        return None, Note("sent_range_not_completed", missing)
    low, high = (bound, given) if missing == "low" else (given, bound)
    return dataclasses.replace(sent, low=low, high=high, completed_from=rule), Note("sent_range_completed", missing)


def select_critical(k: Knowledge, analyte: str, age_days: float | None) -> Critical | None:
    """The critical limits for the patient's age (the adult ones when no age is given), each band's
    edges included or not as its source states them."""
    age = ADULT_AGE_DAYS if age_days is None else age_days
    for rule in k.critical.get(analyte, ()):
        if rule.applies(age):
            return rule
    return None


# ------------------------------------------------------------ edges by unit family
# A result is compared with the figure its source states in the result's own unit family (mass or
# molar); where the source states only the other family's figure, with that figure at the precision it is
# stated with (knowledge.EdgeSide). classify_columns compares strictly (below a low edge: x < e; beyond
# a high edge: x > e), so an inclusive edge is moved to its float neighbour: x <= e is x < next(e).
def strict_low(edge: ComparisonEdge | None, fallback: float | None) -> float:
    """The value a result must be below (strictly) to be beyond a low edge."""
    if edge is None:
        return math.nan if fallback is None else fallback
    return math.nextafter(edge.value, math.inf) if edge.inclusive else edge.value


def strict_high(edge: ComparisonEdge | None, fallback: float | None) -> float:
    """The value a result must be above (strictly) to be beyond a high edge."""
    if edge is None:
        return math.nan if fallback is None else fallback
    return math.nextafter(edge.value, -math.inf) if edge.inclusive else edge.value


@frozen
class Edges:
    """The edges one result is compared with, for its unit family, as classify_columns reads them."""

    low: float
    high: float
    critical_low: float
    critical_low_inclusive: bool
    critical_high: float
    critical_high_inclusive: bool
    grade_low: tuple[float, float, float]
    grade_high: tuple[float, float, float]
    compared: tuple[ComparisonEdge, ...]  # the data's edges that were used, for the answer's basis


def edges_for(interval: Interval | None, critical: Critical | None, term_low: CtcaeTerm | None,
              term_high: CtcaeTerm | None, family: str) -> Edges:
    """The interval, critical and CTCAE edges for a result of unit family `family` ('mass', 'molar')."""
    nan = math.nan
    compared: list[ComparisonEdge] = []
    low = high = nan
    if interval is not None:
        low_edge, high_edge = interval.low_edge(family), interval.high_edge(family)
        low, high = strict_low(low_edge, interval.low), strict_high(high_edge, interval.high)
        compared += [e for e in (low_edge, high_edge) if e is not None]
    c_low, c_low_inc, c_high, c_high_inc = nan, True, nan, True
    if critical is not None:
        low_edge, high_edge = critical.low_edge(family), critical.high_edge(family)
        if low_edge is not None:
            c_low, c_low_inc = low_edge.value, low_edge.inclusive
        elif critical.low is not None:
            c_low, c_low_inc = critical.low, critical.low_inclusive
        if high_edge is not None:
            c_high, c_high_inc = high_edge.value, high_edge.inclusive
        elif critical.high is not None:
            c_high, c_high_inc = critical.high, critical.high_inclusive
        compared += [e for e in (low_edge, high_edge) if e is not None]
    return Edges(low, high, c_low, c_low_inc, c_high, c_high_inc, _grade_edges(term_low, family, strict_low),
                 _grade_edges(term_high, family, strict_high), tuple(compared))


def _grade_edges(term: CtcaeTerm | None, family: str, strict: Callable[[ComparisonEdge | None, float | None], float]
                 ) -> tuple[float, float, float]:
    if term is None:
        return (math.nan, math.nan, math.nan)
    edges = term.grade_edges(family)
    return (strict(edges[0], term.edges[0]), strict(edges[1], term.edges[1]), strict(edges[2], term.edges[2]))


# ------------------------------------------------------------ classification
@frozen
class Columns:
    """Per-value inputs of the classification, all in canonical units.

    NaN means "no such bound". `comparator` codes: 0 none, 1 <, 2 <=, 3 >, 4 >=.
    `grade_low`/`grade_high` hold, per row, the CTCAE edges for grades 2, 3, 4 (NaN: no term).
    """

    value: FloatArray
    comparator: IntArray
    has_interval: BoolArray
    low: FloatArray
    high: FloatArray
    critical_low: FloatArray
    critical_low_inclusive: BoolArray
    critical_high: FloatArray
    critical_high_inclusive: BoolArray
    implausible_low: FloatArray
    implausible_high: FloatArray
    grade_low: FloatArray
    grade_high: FloatArray
    # Rows classified against a range sent with the result: their CTCAE grades beyond an edge that does not
    # depend on the ULN/LLN are given whatever that range says (None: no such row).
    sent: BoolArray | None = None


@frozen
class Verdicts:
    """Per-value outputs: codes index CLASSIFICATIONS, FLAGS and REASONS (outcomes.py); grade 0 = none."""

    classification: IntArray
    flag: IntArray
    critical: BoolArray
    reason: IntArray
    grade: IntArray


def classify_columns(c: Columns) -> Verdicts:
    """Classify whole columns at once: the one implementation of the classification rules.

    Order of precedence: implausible, then critical (at or beyond, with the comparison the
    source states), then no interval, then the interval. An off-scale result ("<v", ">=v"...) is
    judged on its whole possible range: "<v" is tested as the largest float below v, ">v" as the
    smallest above, a result open upwards can never be low (nor one open downwards high). It is
    implausible, LL/HH, L/H or N when its whole range is; when its range straddles an edge it is
    indeterminate (reason off_scale). Interval edges are compared strictly (see edges_for).
    """
    v, cmp = c.value, c.comparator
    point = cmp == 0
    inf = np.inf
    # The shortcuts below only skip work whose result is known (no comparator, all limits
    # inclusive): small panels are dominated by per-call numpy overhead.
    if point.all():
        low_side = high_side = v
    else:
        low_side = np.where(cmp == 1, np.nextafter(v, -inf), np.where(cmp >= 3, inf, v))
        high_side = np.where(cmp == 3, np.nextafter(v, inf), np.where((cmp == 1) | (cmp == 2), -inf, v))
    critical_low, critical_high = c.critical_low, c.critical_high
    if not c.critical_low_inclusive.all():
        critical_low = np.where(c.critical_low_inclusive, critical_low, np.nextafter(critical_low, -inf))
    if not c.critical_high_inclusive.all():
        critical_high = np.where(c.critical_high_inclusive, critical_high, np.nextafter(critical_high, inf))
    # low_side: the highest value the result allows; high_side: the lowest (equal for a point value)
    implausible = (low_side < c.implausible_low) | (high_side > c.implausible_high)
    plausible = ~implausible
    is_ll = plausible & (low_side <= critical_low)
    is_hh = plausible & ~is_ll & (high_side >= critical_high)
    critical = is_ll | is_hh
    by_interval = plausible & ~critical & c.has_interval
    outside_low = low_side < c.low
    outside_high = high_side > c.high
    inside = ~(high_side < c.low) & ~(low_side > c.high)  # the whole range within (NaN: no such bound)
    is_l = by_interval & outside_low
    is_h = by_interval & outside_high
    is_n = by_interval & ~outside_low & ~outside_high & inside
    hypo, hyper = is_ll | is_l, is_hh | is_h
    classification = (hypo * 1 + is_n * 2 + hyper * 3).astype(np.int8)
    flag = (is_ll * 1 + is_l * 2 + is_n * 3 + is_h * 4 + is_hh * 5).astype(np.int8)
    undecided = plausible & ~critical & ~is_l & ~is_h & ~is_n
    reason = (implausible * 1 + (undecided & ~point) * 3
              + (undecided & point & ~c.has_interval) * 2).astype(np.int8)
    low_steps = (low_side[:, None] < c.grade_low).sum(axis=1)
    high_steps = (high_side[:, None] > c.grade_high).sum(axis=1)
    graded_low = hypo & c.has_interval & outside_low & ~np.isnan(c.grade_low[:, 0])
    graded_high = hyper & c.has_interval & outside_high & ~np.isnan(c.grade_high[:, 0])
    if c.sent is not None and c.sent.any():
        graded_low |= c.sent & plausible & (low_steps > 0)
        graded_high |= c.sent & plausible & (high_steps > 0)
    grade = (graded_low * (1 + low_steps) + graded_high * (1 + high_steps)).astype(np.int8)
    return Verdicts(classification, flag, critical, reason, grade)


# ------------------------------------------------------------ one value at a time
# The parameters of one row of Columns (all but the value), NaN written as None so equal rows are equal keys.
RowKey = tuple[object, ...]


def row_key(comparator: int, has_interval: bool, low: float, high: float, critical_low: float,
            critical_low_inclusive: bool, critical_high: float, critical_high_inclusive: bool,
            implausible_low: float, implausible_high: float, grade_low: tuple[float, float, float],
            grade_high: tuple[float, float, float], sent: bool = False) -> RowKey:
    def f(x: float) -> float | None:
        return None if x != x else float(x)

    return (sent, comparator, has_interval, f(low), f(high), f(critical_low), critical_low_inclusive,
            f(critical_high), critical_high_inclusive, f(implausible_low), f(implausible_high), *map(f, grade_low),
            *map(f, grade_high))


class SegmentTable:
    """classify_columns' answers for one row of parameters, as a step function of the value.

    Every comparison classify_columns makes is of the value (or its float neighbour) with an edge, so
    its answer only changes at an edge or a float next to one. The table holds those points, the
    answer at each, and the answer on each open gap between them (all computed by classify_columns,
    which stays the one statement of the rules): a single value is then a bisect, not numpy calls on
    one-row arrays."""

    def __init__(self, key: RowKey):
        nan = math.nan
        sent, comparator, has, low, high, c_low, c_low_inc, c_high, c_high_inc, i_low, i_high, *grades = key
        edges = {x for x in (low, high, c_low, c_high, i_low, i_high, *grades) if isinstance(x, float)}
        points = sorted({y for x in edges for y in (math.nextafter(x, -math.inf), x,
                                                    math.nextafter(x, math.inf))}) or [0.0]
        gaps = [points[0] - 1.0, *(a + (b - a) / 2 for a, b in zip(points, points[1:], strict=False)),
                points[-1] * 2 + 1.0]
        values = np.array(points + gaps, dtype=np.float64)
        n = len(values)

        def column(x: object) -> FloatArray:
            return np.full(n, x if isinstance(x, float) else nan, dtype=np.float64)

        def flags(x: object) -> BoolArray:
            return np.full(n, bool(x), dtype=bool)

        def grade_edges(xs: list[object]) -> FloatArray:
            return np.array([[x if isinstance(x, float) else nan for x in xs]] * n, dtype=np.float64)

        v = classify_columns(Columns(
            value=values, comparator=np.full(n, comparator, dtype=np.int8), has_interval=flags(has),
            low=column(low), high=column(high), critical_low=column(c_low), critical_low_inclusive=flags(c_low_inc),
            critical_high=column(c_high), critical_high_inclusive=flags(c_high_inc), implausible_low=column(i_low),
            implausible_high=column(i_high), grade_low=grade_edges(grades[:3]), grade_high=grade_edges(grades[3:]),
            sent=flags(sent)))
        answers = list(zip(v.classification.tolist(), v.flag.tolist(), v.critical.tolist(), v.reason.tolist(),
                           v.grade.tolist(), strict=True))
        self.points = points
        self.at_point = answers[:len(points)]
        self.in_gap = answers[len(points):]

    def verdict(self, value: float) -> tuple[int, int, bool, int, int]:
        """(classification, flag, critical, reason, grade) codes, as classify_columns gives them."""
        i = bisect.bisect_left(self.points, value)
        if i < len(self.points) and self.points[i] == value:
            return self.at_point[i]
        return self.in_gap[i]


# ------------------------------------------------------------ one result's notes
def result_notes(analyte: str, specimen: str, hemolysis: str | None, classification: str, reason: str | None,
                 critical: Critical | None, sent: bool) -> tuple[Note, ...]:
    """The notes of one classified result, after those of its interval's selection, in the order given."""
    notes: list[Note] = []
    if reason is not None:
        notes.append(Note(reason))  # implausible, no_interval, off_scale
    if sent:
        notes.append(Note("interval_from_request"))
    if critical is not None and reason != "implausible":
        if critical.low is None and classification == "hypo":
            notes.append(Note("no_critical_limit", "low"))
        if critical.high is None and classification == "hyper":
            notes.append(Note("no_critical_limit", "high"))
    if analyte == "potassium":
        if hemolysis in HEMOLYSED:
            notes.append(Note("hemolysis"))
        if classification == "hyper" and specimen == "serum":
            notes.append(Note("serum_potassium_high"))
    return tuple(notes)


# ------------------------------------------------------------ corrected calcium
def corrected_pair(rows: Sequence[tuple[str | None, bool]]) -> tuple[int, int] | None:
    """Positions of the calcium and albumin a corrected calcium is derived from: the panel's first of
    each, neither off scale. `rows`: (analyte, or None for a refused row; whether off scale)."""
    calcium = next((i for i, (a, _) in enumerate(rows) if a == "calcium"), None)
    albumin = next((i for i, (a, _) in enumerate(rows) if a == "albumin"), None)
    if calcium is None or albumin is None or rows[calcium][1] or rows[albumin][1]:
        return None
    return calcium, albumin


def derived_notes(calcium_notes: tuple[Note, ...]) -> tuple[Note, ...]:
    """The notes of its calcium's interval selection that the derived corrected calcium carries too."""
    return tuple(n for n in calcium_notes if n.code in ("adult_interval_assumed", "adult_limits_assumed"))


def corrected_calcium(cc: CorrectedCalcium, calcium: Number, albumin: Number, calcium_factor: float,
                      albumin_factor: float) -> tuple[Number, Number]:
    """The formula, on canonical values (floats or arrays): (in the formula's calcium unit, canonical)."""
    corrected = calcium / calcium_factor + cc.slope * (cc.reference_albumin - albumin / albumin_factor)
    return corrected, corrected * calcium_factor


# ------------------------------------------------------------------ panel rules
@frozen
class PanelFindings:
    """What the panel rules add: notes per row and for the derived row, whether the derived row is
    kept, and the patterns found (members as row positions; -1 is the derived row)."""

    kept: bool
    row_notes: tuple[tuple[Note, ...], ...]
    derived_notes: tuple[Note, ...]
    patterns: tuple[tuple[Pattern, tuple[int, ...]], ...]


def corrected_applies(cc: CorrectedCalcium, age_days: float | None) -> bool:
    """Whether the patient's age lets the formula be applied (no age given: adult assumed, as for the
    interval and the limits, whose warning says so)."""
    return cc.applies_at_age(ADULT_AGE_DAYS if age_days is None else age_days)


def panel_rules(patterns: Sequence[Pattern], rows: Sequence[tuple[str | None, str, str | None]],
                pair: tuple[int, int] | None, derived_classification: str | None,
                formula: CorrectedCalcium, adult: bool = True) -> PanelFindings:
    """The rules over a whole panel. `rows`: (analyte, or None for a refused row; classification;
    reason) in panel order; `pair` from corrected_pair; the derived row's classification; whether the
    patient's age lets the corrected-calcium formula apply (corrected_applies); `formula`: where the data gives
    the formula (a corrected value from an albumin outside it is kept, with a warning that says so)."""
    notes: list[list[Note]] = [[] for _ in rows]
    plausible = pair is not None and "implausible" not in (rows[pair[0]][2], rows[pair[1]][2])
    kept = plausible and adult
    if pair is not None and not plausible:
        notes[pair[0]].append(Note("no_corrected_calcium"))
    elif pair is not None and not adult:
        notes[pair[0]].append(Note("corrected_calcium_outside_formula"))
    albumin_low = any(a == "albumin" and c == "hypo" for a, c, _ in rows)
    for i, (analyte, classification, _) in enumerate(rows):
        if analyte != "calcium":
            continue
        if albumin_low:
            notes[i].append(Note("low_albumin"))
        if classification in ("hypo", "hyper"):
            notes[i].append(Note("ctcae_graded_on_corrected" if kept else "ctcae_needs_albumin"))
        if kept and pair is not None and i == pair[0]:
            notes[i].append(Note("symptoms_of_corrected_calcium"))
    first: dict[str, int] = {}
    for i, (analyte, classification, _) in enumerate(rows):
        if analyte is not None and classification != "indeterminate":
            first.setdefault(analyte, i)
    classification_of = {i: c for i, (_, c, _) in enumerate(rows)}
    if kept and derived_classification is not None and derived_classification != "indeterminate":
        first.setdefault("corrected_calcium", -1)
        classification_of[-1] = derived_classification
    found = []
    for pattern in patterns:
        members = []
        for req in pattern.requires:
            chosen = next((first[a] for a in req.any_of if a in first), None)
            if chosen is None or classification_of[chosen] != req.classification:
                break
            members.append(chosen)
        else:
            found.append((pattern, tuple(members)))
    derived_notes: tuple[Note, ...] = ()
    if kept:
        derived_notes = (Note("corrected_calcium_limitations"),)
        if pair is not None and not formula.applies_to_albumin(rows[pair[1]][1] == "hypo"):  # hypo: below it
            derived_notes += (Note("corrected_calcium_albumin_not_low"),)
    return PanelFindings(kept, tuple(map(tuple, notes)), derived_notes, tuple(found))
