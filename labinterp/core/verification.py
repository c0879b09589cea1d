"""Verification: may a result be released, or must the laboratory look first (each rule once, as codes)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from labinterp.core.engine import Engine, refused
from labinterp.core.errors import FieldError, InvalidInput
from labinterp.core.knowledge import Critical, Implausible, Knowledge
from labinterp.core.model import COMPARATOR_CODES, COMPARATORS, Panel
from labinterp.core.outcomes import PanelOutcome, Verdict

# The stated order in which the rules apply (and in which a result's reasons are listed).
ORDER = ("critical_value", "implausible", "off_scale", "measuring_range", "hemolysis", "edta_contamination",
         "iv_fluid_contamination", "delta_check", "no_interval")
ACTIONS = ("notify", "review", "rerun", "recollect", "comment", "suppress")
DISPOSITIONS = ("release", "hold")
LOW_FLAGS = ("L", "LL")
Detail = float | int | str | bool | datetime | None


# ------------------------------------------------------------------------- the rules (data)
@dataclass(frozen=True)
class Tier:
    """A haemolysis tier: from this index (comparison >= or >) the action applies."""

    threshold: float
    comparison: str
    action: str

    def reached(self, index: float) -> bool:
        return index >= self.threshold if self.comparison == ">=" else index > self.threshold


@dataclass(frozen=True)
class HemolysisRule:
    analyte: str
    tiers: tuple[Tier, ...]  # ascending
    source: str


@dataclass(frozen=True)
class MeasuringRange:
    """An analyser's measuring range (canonical unit), as the laboratory states it."""

    analyte: str
    low: float | None
    high: float | None
    stated_low: float | None
    stated_high: float | None
    unit: str
    source: str | None


@dataclass(frozen=True)
class EdtaRule:
    potassium_at_least: float  # canonical (mmol/L)
    stated: float
    unit: str
    low_calcium: tuple[str, ...]
    supporting: tuple[str, ...]
    affects: tuple[str, ...]
    source: str
    affects_source: str | None


@dataclass(frozen=True)
class IvFluidRule:
    analyte: str
    change_percent_at_most: float | None
    rise_at_least: float | None  # canonical
    stated_rise: float | None
    unit: str | None


@dataclass(frozen=True)
class DeltaRule:
    """One analyte's delta-check limit: a reference change value (CVI, CVA) or the laboratory's own."""

    analyte: str
    cvi_percent: float | None
    cvi_source: str | None
    cva_percent: float | None
    absolute_limit: float | None  # canonical
    stated_absolute: float | None
    unit: str | None
    percent_limit: float | None
    window_hours: float | None
    source: str | None

    def limit_percent(self, z: float) -> float | None:
        if self.percent_limit is not None:
            return self.percent_limit
        if self.cvi_percent is not None and self.cva_percent is not None:
            return z * math.sqrt(2.0) * math.sqrt(self.cva_percent ** 2 + self.cvi_percent ** 2)
        return None


@dataclass(frozen=True)
class VerificationRules:
    """The verification rules in force for one laboratory (None: the defaults), validated."""

    data_version: str
    lab: str | None
    enabled: dict[str, bool]
    actions: dict[str, str]
    sources: dict[str, str | None]
    below_action: str
    measuring: dict[str, MeasuringRange]
    hemolysis: dict[str, HemolysisRule]
    grades: dict[str, str]
    index_unit: str
    index_source: str | None
    grade_source: str | None
    edta: EdtaRule
    iv_fluid: dict[str, IvFluidRule]
    iv_window_hours: float | None
    window_source: str | None
    delta: dict[str, DeltaRule]
    delta_z: float
    texts: dict[str, str]
    canonical_units: dict[str, str] = field(compare=False)
    source_titles: dict[str, str] = field(compare=False)
    source_urls: dict[str, str] = field(default_factory=dict, compare=False)
    # the (coding system, code) pairs a feed sends the haemolysis index under (HL7 OBX-3, FHIR Observation.code):
    # a laboratory's own, from its profile; the defaults name none (no code could be checked against LOINC)
    index_codes: frozenset[tuple[str, str]] = frozenset()

    def on(self, code: str) -> bool:
        return self.enabled.get(code, False)

    @cached_property
    def off(self) -> tuple[RuleOff, ...]:
        return self.rules_off()

    @cached_property
    def analyte_parameters(self) -> dict[str, tuple[float, ...]]:
        """Each analyte's parameters of the specimen and history rules (see _parameters), derived once."""
        return {name: _analyte_parameters(self, name) for name in self.canonical_units}

    def rules_off(self) -> tuple[RuleOff, ...]:
        """The rules that check nothing for this laboratory, each with why (the answer says so)."""
        off: list[RuleOff] = []
        for code in ORDER:
            if not self.on(code):
                off.append(RuleOff(code, "disabled" if code != "delta_check" or self.delta else "delta_check"))
            elif code == "measuring_range" and not self.measuring:
                off.append(RuleOff(code, "measuring_range"))
            elif code == "delta_check" and not self.delta:
                off.append(RuleOff(code, "delta_check"))
        return tuple(off)


@dataclass(frozen=True)
class RuleOff:
    code: str
    why: str  # the text key under rules_off.


# ------------------------------------------------------------------------- facts and answers
@dataclass(frozen=True)
class PreviousInput:
    """An earlier result of the same patient, as a door received it."""

    analyte: str
    value: float
    unit: str
    collected_at: datetime | None = None
    comparator: str | None = None


class PreviousResult(NamedTuple):  # a file makes one per released result: a tuple is made four times faster
    analyte: str
    value: float  # canonical
    comparator: str | None
    collected_at: datetime | None


@dataclass(frozen=True)
class VerificationInput:
    """A panel and what verification needs beyond it (per result, aligned with panel.results)."""

    panel: Panel
    collected_at: tuple[datetime | None, ...]
    hemolysis_index: tuple[float | None, ...]
    previous: tuple[PreviousInput, ...] = ()


@dataclass(frozen=True)
class Reason:
    """Why a rule fired: its code, the action, whether it holds, the source id, the numbers compared."""

    code: str
    action: str
    holds: bool
    source: str | None
    details: tuple[tuple[str, Detail], ...]
    variant: str | None = None

    @property
    def text_key(self) -> str:
        return self.code if self.variant is None else f"{self.code}.{self.variant}"

    def detail(self) -> dict[str, Detail]:
        return dict(self.details)


@dataclass(frozen=True)
class Verification:
    disposition: str
    reasons: tuple[Reason, ...]


RELEASED = Verification("release", ())
_RANK = {code: rank for rank, code in enumerate(ORDER)}


@dataclass(frozen=True)
class PanelVerification:
    outcome: PanelOutcome
    results: tuple[Verification, ...]  # aligned with outcome.results
    rules: VerificationRules
    rules_off: tuple[RuleOff, ...]

    @property
    def disposition(self) -> str:
        return "hold" if any(v.disposition == "hold" for v in self.results) else "release"


@dataclass
class VerifySummary:
    """What a file of results came to: dispositions, overall and per analyte; holds by reason and action."""

    rows: int = 0
    released: int = 0
    held: int = 0
    errors: int = 0
    by_analyte: Counter[tuple[str, str]] = field(default_factory=Counter)  # (analyte, disposition)
    by_reason: Counter[str] = field(default_factory=Counter)  # a held result counts once per holding reason
    by_action: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)  # results with the reason, holding or not

    def count(self, analyte: str, v_disposition: str, codes: Iterable[tuple[str, str, bool]], times: int = 1) -> None:
        """Count verified results (`times` alike): the disposition and the reasons as (code, action, holds)."""
        self.rows += times
        self.by_analyte[(analyte, v_disposition)] += times
        if v_disposition == "hold":
            self.held += times
        else:
            self.released += times
        for code, action, holds in codes:
            self.alerts[code] += times
            if holds:
                self.by_reason[code] += times
                self.by_action[action] += times


# ------------------------------------------------------------------------- preparing the facts
def utc(moment: datetime) -> datetime:
    """Times without an offset are read as UTC, so that every pair of times can be compared."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def previous_results(engine: Engine, k: Knowledge, previous: Sequence[PreviousInput],
                     path: tuple[str | int, ...] = ("previous",)) -> tuple[PreviousResult, ...]:
    """Earlier results in the canonical unit; raises InvalidInput naming every bad field."""
    errors: list[FieldError] = []
    out: list[PreviousResult] = []
    for i, p in enumerate(previous):
        here = (*path, i)
        count = len(errors)
        analyte, _, _ = engine.resolve_analyte(k, p.analyte)
        if analyte is None:
            errors.append(refused(k, (*here, "analyte"), "unknown_previous_analyte", "unknown_analyte"))
        value = p.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            errors.append(refused(k, (*here, "value"), "bound_invalid", "invalid_number"))
        if p.comparator is not None and p.comparator not in COMPARATORS:
            errors.append(refused(k, (*here, "comparator"), "invalid_choice", "invalid_choice",
                                  choices=list(COMPARATORS)))
        factor = None
        if analyte is not None:
            _, factor = engine.resolve_unit(k, analyte, p.unit, (*here, "unit"), errors)
        if len(errors) > count or analyte is None or factor is None:
            continue
        out.append(PreviousResult(analyte, float(value) * factor, p.comparator,
                                  None if p.collected_at is None else utc(p.collected_at)))
    if errors:
        raise InvalidInput(errors)
    return tuple(out)


def specimen_index(indices: Iterable[float]) -> float | None:
    """The haemolysis index of a specimen for which a feed sends several (HL7 OBX, FHIR Observations): the
    highest, so that no tier is missed; None when it sends none."""
    return max(indices, default=None)


def index_problem(value: object, off_scale: bool = False, unit: str | None = None,
                  index_unit: str = "") -> str | None:
    """Why a haemolysis index as a door received it cannot be read: "value" (not a finite number from 0 up, or
    off scale) or "unit" (given, and not the rule's index_unit: it is never converted); None: it can."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or off_scale or not math.isfinite(value)
            or value < 0):
        return "value"
    if unit and unit != index_unit:
        return "unit"
    return None


def check_facts(request: VerificationInput, k: Knowledge) -> list[FieldError]:
    """Problems with the per-result facts (the schema checks types; this checks what is left)."""
    errors: list[FieldError] = []
    for i, index in enumerate(request.hemolysis_index):
        if index is not None and index_problem(index) is not None:
            errors.append(refused(k, ("results", i, "hemolysis_index"), "bound_invalid", "invalid_number"))
    return errors


def verify_request(engine: Engine, rules_by_lab: dict[str | None, VerificationRules],
                   request: VerificationInput) -> PanelVerification:
    """Interpret and verify one request; raises InvalidInput naming every bad field."""
    errors = check_facts(request, engine.knowledge)  # the words are the same in every profile
    k = engine.profile(request.panel.lab)
    try:
        previous = previous_results(engine, k, request.previous)
    except InvalidInput as exc:
        errors.extend(exc.errors)
        previous = ()
    try:
        outcome = engine.interpret(request.panel)
    except InvalidInput as exc:
        raise InvalidInput(exc.errors + errors) from None
    if errors:
        raise InvalidInput(errors)
    times = tuple(None if t is None else utc(t) for t in request.collected_at)
    return verify(outcome, times, request.hemolysis_index, previous, rules_by_lab[request.panel.lab])


# ------------------------------------------------------------------------- the rules (applied)
class Measured(Protocol):
    """What the rules read of one interpreted result: an engine Outcome, or a file row's MeasuredResult."""

    @property
    def analyte(self) -> str: ...
    @property
    def value(self) -> float: ...  # canonical
    @property
    def comparator(self) -> str | None: ...
    @property
    def hemolysis(self) -> str | None: ...
    @property
    def verdict(self) -> Verdict: ...
    @property
    def critical_rule(self) -> Critical | None: ...
    @property
    def implausible_rule(self) -> Implausible | None: ...
    @property
    def interval_reason(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class MeasuredResult:
    """A result as the file path interpreted it (the same facts an Outcome gives the rules)."""

    analyte: str
    value: float
    comparator: str | None
    hemolysis: str | None
    verdict: Verdict
    critical_rule: Critical | None
    implausible_rule: Implausible | None
    interval_reason: str | None


def verify(outcome: PanelOutcome, collected_at: Sequence[datetime | None], hemolysis_index: Sequence[float | None],
           previous: Sequence[PreviousResult], rules: VerificationRules) -> PanelVerification:
    """Apply every rule, in ORDER, to every measured result of one specimen (one panel).

    collected_at and hemolysis_index are aligned with outcome.results (the panel's measured results, in order)."""
    results = outcome.results

    def fact(seq: Sequence[float | None] | Sequence[datetime | None], i: int) -> object:
        return seq[i] if i < len(seq) else None

    per: list[list[Reason]] = []
    times: list[datetime | None] = []
    for i, r in enumerate(results):
        index = fact(hemolysis_index, i)
        per.append(list(result_reasons(rules, r, index if isinstance(index, (int, float)) else None)))
        moment = fact(collected_at, i)
        times.append(moment if isinstance(moment, datetime) else None)
    if results:
        specimen_reasons(rules, results, times, previous, per)
    return PanelVerification(outcome, tuple(map(decided, per)), rules, rules.off)


def result_reasons(rules: VerificationRules, r: Measured, hemolysis_index: float | None) -> tuple[Reason, ...]:
    """The rules that read one result alone (critical, implausible, off scale, measuring range, haemolysis,
    no interval): the same result and index always give the same reasons, so a file decides them once."""
    reasons: list[Reason] = []
    _critical(rules, r, reasons)
    _implausible(rules, r, reasons)
    _off_scale(rules, r, reasons)
    _measuring_range(rules, r, reasons)
    _hemolysis(rules, r, hemolysis_index, reasons)
    _no_interval(rules, r, reasons)
    return tuple(reasons)


def specimen_reasons(rules: VerificationRules, results: Sequence[Measured], times: Sequence[datetime | None],
                     previous: Sequence[PreviousResult], per: list[list[Reason]]) -> None:
    """The rules that read the whole specimen and the patient's previous results (EDTA, intravenous fluid,
    delta check) for one specimen, adding to each result's reasons in `per` (aligned with results and times):
    the array rules (SpecimenFindings) over its few rows."""
    rows = result_columns(results, times)
    before = previous_columns(previous, rows.names)
    if len(before.analyte):  # each result is compared with the previous results of its analyte
        query, candidate = np.nonzero(rows.analyte[:, None] == before.analyte[None, :])
    else:
        query = candidate = np.zeros(0, dtype=np.int64)
    for i, reason in SpecimenFindings(rules, rows, before, query, candidate).reasons():
        per[i].append(reason)


def decided(reasons: Sequence[Reason]) -> Verification:
    """A result's disposition from its reasons (held when any holds), the reasons in the stated ORDER."""
    if not reasons:
        return RELEASED
    return Verification("hold" if any(x.holds for x in reasons) else "release",
                        tuple(sorted(reasons, key=lambda x: _RANK[x.code])))


def _critical(rules: VerificationRules, r: Measured, reasons: list[Reason]) -> None:
    if not rules.on("critical_value") or not r.verdict.critical or r.critical_rule is None:
        return
    c = r.critical_rule
    low_side = r.verdict.classification == "hypo"
    limit = c.low if low_side else c.high
    inclusive = c.low_inclusive if low_side else c.high_inclusive
    comparison = ("<=" if inclusive else "<") if low_side else (">=" if inclusive else ">")
    reasons.append(Reason("critical_value", rules.actions["critical_value"], True, c.source,
                          (("value", r.value), ("unit", _unit(rules, r)), ("limit", limit), ("comparison", comparison),
                           ("side", "low" if low_side else "high"))))


def _implausible(rules: VerificationRules, r: Measured, reasons: list[Reason]) -> None:
    if not rules.on("implausible") or r.verdict.reason != "implausible":
        return
    rule = r.implausible_rule
    reasons.append(Reason("implausible", rules.actions["implausible"], True, None if rule is None else rule.source,
                          (("value", r.value), ("unit", _unit(rules, r)), ("low", None if rule is None else rule.low),
                           ("high", None if rule is None else rule.high))))


def _off_scale(rules: VerificationRules, r: Measured, reasons: list[Reason]) -> None:
    if not rules.on("off_scale") or r.comparator is None:
        return
    reasons.append(Reason("off_scale", rules.actions["off_scale"], True, rules.sources.get("off_scale"),
                          (("comparator", r.comparator), ("value", r.value), ("unit", _unit(rules, r)))))


def _measuring_range(rules: VerificationRules, r: Measured, reasons: list[Reason]) -> None:
    rng = rules.measuring.get(r.analyte)
    if not rules.on("measuring_range") or rng is None:
        return
    details: tuple[tuple[str, Detail], ...] = (("value", r.value), ("unit", _unit(rules, r)), ("low", rng.low),
                                               ("high", rng.high), ("stated_low", rng.stated_low),
                                               ("stated_high", rng.stated_high), ("stated_unit", rng.unit))
    if rng.high is not None and r.value > rng.high and r.comparator not in ("<", "<="):
        reasons.append(Reason("measuring_range", rules.actions["measuring_range"], True, rng.source, details, "high"))
    elif rng.low is not None and r.value < rng.low and r.comparator not in (">", ">="):
        reasons.append(Reason("measuring_range", rules.below_action, True, rng.source, details, "low"))


def _hemolysis(rules: VerificationRules, r: Measured, index: float | None, reasons: list[Reason]) -> None:
    rule = rules.hemolysis.get(r.analyte)
    if not rules.on("hemolysis") or rule is None:
        return
    if index is not None:
        reached = [t for t in rule.tiers if t.reached(index)]
        if not reached:
            return
        tier = reached[-1]
        reasons.append(Reason("hemolysis", tier.action, tier.action != "comment", rule.source,
                              (("analyte", r.analyte), ("index", index), ("index_unit", rules.index_unit),
                               ("threshold", tier.threshold), ("comparison", tier.comparison)), tier.action))
        return
    if r.hemolysis is None or r.hemolysis == "none":
        return
    action = rules.grades.get(r.hemolysis)
    if action is None:
        return
    reasons.append(Reason("hemolysis", action, action != "comment", rules.grade_source,
                          (("analyte", r.analyte), ("grade", r.hemolysis)), f"grade_{action}"))


def _no_interval(rules: VerificationRules, r: Measured, reasons: list[Reason]) -> None:
    if not rules.on("no_interval") or r.verdict.reason != "no_interval":
        return
    reasons.append(Reason("no_interval", rules.actions["no_interval"], True, None,
                          (("reason", r.interval_reason),)))


def _unit(rules: VerificationRules, r: Measured) -> str:
    return rules.canonical_units[r.analyte]


# ------------------------------------------------------------------------- the specimen and history rules (arrays)
# EDTA contamination, intravenous-fluid contamination and the delta check, and the choice of the previous result
# they compare with: one statement each, over arrays of any length (a panel's few results, or a file's block of
# specimens), so that every door applies the same rules.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NONE = np.nan  # a limit or window not set


def micros(moment: datetime) -> int:
    """A time as whole microseconds since 1970 (UTC): such times compare exactly as the datetimes do."""
    return (utc(moment) - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class ResultColumns:
    """Measured results of one or more specimens, as arrays aligned by row (a specimen's rows are adjacent)."""

    starts: npt.NDArray[np.int64]  # each specimen's first row, ascending
    names: Sequence[str]  # the analytes the codes stand for
    analyte: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]  # canonical
    comparator: npt.NDArray[np.int64]  # 0: none; 1 '<', 2 '<=', 3 '>', 4 '>='
    low: npt.NDArray[np.int64]  # 0: not flagged low; 1: flagged L; 2: LL
    time: npt.NDArray[np.int64]  # collected_at in microseconds (see micros); UNTIMED: none
    timed: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PreviousColumns:
    """Previous results (analytes coded as the results' names), in the order given."""

    analyte: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]  # canonical
    off_scale: npt.NDArray[np.bool_]  # with a comparator
    time: npt.NDArray[np.int64]
    timed: npt.NDArray[np.bool_]
    moments: Sequence[datetime | None] | npt.NDArray[np.object_]  # collected_at as given (the reasons show it)


LOW_CODES: dict[str | None, int] = {flag: code for code, flag in enumerate(LOW_FLAGS, 1)}  # ResultColumns.low's
# codes (any other flag: 0); a low flag by its code: LOW_FLAGS[code - 1]


UNTIMED = int(np.iinfo(np.int64).min)  # the time column's value for a result without collected_at


def result_columns(results: Sequence[Measured], times: Sequence[datetime | None]) -> ResultColumns:
    """One specimen's results as columns (the single-panel doors)."""
    names = list(dict.fromkeys(r.analyte for r in results))
    code = {name: c for c, name in enumerate(names)}
    coded = np.array([(code[r.analyte], COMPARATOR_CODES.get(r.comparator, 0), LOW_CODES.get(r.verdict.flag, 0),
                       UNTIMED if t is None else micros(t)) for r, t in zip(results, times, strict=True)],
                     dtype=np.int64).reshape(-1, 4)
    time = coded[:, 3]
    return ResultColumns(np.zeros(1 if len(results) else 0, dtype=np.int64), names, coded[:, 0],
                         np.array([r.value for r in results], dtype=np.float64), coded[:, 1], coded[:, 2], time,
                         time != UNTIMED)


def previous_columns(previous: Sequence[PreviousResult], names: Sequence[str]) -> PreviousColumns:
    """Previous results as columns, their analytes coded as `names` (-1: none of them)."""
    code = {name: c for c, name in enumerate(names)}
    moments = [p.collected_at for p in previous]
    coded = np.array([(code.get(p.analyte, -1), p.comparator is not None, UNTIMED if t is None else micros(t))
                      for p, t in zip(previous, moments, strict=True)], dtype=np.int64).reshape(-1, 3)
    time = coded[:, 2]
    return PreviousColumns(coded[:, 0], np.array([p.value for p in previous], dtype=np.float64), coded[:, 1] != 0,
                           time, time != UNTIMED, moments)


def latest_previous(rows: ResultColumns, previous: PreviousColumns, query: npt.NDArray[np.int64],
                    candidate: npt.NDArray[np.int64],
                    window_hours: npt.NDArray[np.float64] | float) -> npt.NDArray[np.int64]:
    """Per row, the previous result it is compared with (-1: none): of the previous results paired with it
    (row query[k] with previous result candidate[k]), the most recent earlier one, within the row's window
    (hours, per row or for all; NaN: none) when one is set. A window needs both times; of previous results
    without a time the last one given is the most recent, and one with a time is more recent than any
    without; of equal times, the last given."""
    chosen = np.full(len(rows.value), -1, dtype=np.int64)
    if not len(query):
        return chosen
    both = rows.timed[query] & previous.timed[candidate]
    difference = rows.time[query] - previous.time[candidate]
    if isinstance(window_hours, np.ndarray):
        window = window_hours[query]
        hours = difference / 1e6 / 3600.0  # as timedelta.total_seconds() / 3600 (exact microseconds, one rounding)
        eligible = np.where(both, (difference > 0) & ~(hours > window), np.isnan(window))
    elif math.isnan(window_hours):  # no window: an earlier time, or a time missing
        eligible = ~both | (difference > 0)
    else:  # a window needs both times
        eligible = both & (difference > 0) & ~(difference / 1e6 / 3600.0 > window_hours)
    q, c = query[eligible], candidate[eligible]
    if len(q) > 1 and not (q[1:] > q[:-1]).all():  # a row with more than one: the most recent wins
        timed = previous.timed[c]
        order = np.lexsort((c, np.where(timed, previous.time[c], 0), timed, q))
        q, c = q[order], c[order]
        last = np.ones(len(q), dtype=bool)
        last[:-1] = q[1:] != q[:-1]
        q, c = q[last], c[last]
    chosen[q] = c
    return chosen


class SpecimenFindings:
    """What the specimen and history rules found, per row: `held` (any of them holds the result) and, built
    only when asked, their reasons."""

    __slots__ = ("rules", "rows", "previous", "held", "_edta", "_iv", "_delta")

    def __init__(self, rules: VerificationRules, rows: ResultColumns, previous: PreviousColumns,
                 query: npt.NDArray[np.int64], candidate: npt.NDArray[np.int64]):
        self.rules, self.rows, self.previous = rules, rows, previous
        n = len(rows.value)
        parameters = _parameters(rules, rows.names, rows.analyte)
        self._edta = _edta(rules, rows, parameters)
        self._iv = self._delta = None
        if len(query):
            self._iv = _iv_fluid(rules, rows, parameters, previous, query, candidate)
            self._delta = _delta(rules, rows, parameters, previous, query, candidate)
        held = np.zeros(n, dtype=bool)
        if self._edta is not None:
            held |= self._edta[0]
        if self._iv is not None:
            held |= self._iv[0] | self._iv[1]
        if self._delta is not None:
            held |= self._delta[0]
        self.held = held

    def reasons(self) -> list[tuple[int, Reason]]:
        """(row, reason) for every reason found, by rule in ORDER."""
        out: list[tuple[int, Reason]] = []
        rules, rows, previous = self.rules, self.rows, self.previous
        names, analyte, value = rows.names, rows.analyte, rows.value
        if self._edta is not None:
            e = rules.edta
            hit, k_row, ca_row, mg_row = self._edta
            made: dict[int, Reason] = {}
            for i in np.flatnonzero(hit).tolist():
                k, c, m = int(k_row[i]), int(ca_row[i]), int(mg_row[i])
                reason = made.get(k)
                if reason is None:
                    low_mg = m >= 0
                    low_flag: str = LOW_FLAGS[rows.low[c] - 1]
                    details: tuple[tuple[str, Detail], ...] = (
                        ("potassium", float(value[k])), ("potassium_at_least", e.potassium_at_least),
                        ("unit", "mmol/L"), ("low_analyte", names[analyte[c]]), ("low_value", float(value[c])),
                        ("low_flag", low_flag), ("supporting_analyte", names[analyte[m]] if low_mg else None),
                        ("supporting_value", float(value[m]) if low_mg else None))
                    reason = made[k] = Reason("edta_contamination", rules.actions["edta_contamination"], True,
                                              e.source, details, "with_magnesium" if low_mg else None)
                out.append((i, reason))
        if self._iv is not None:
            own, specimen, trigger, chosen, change, percent = self._iv
            action, source = rules.actions["iv_fluid_contamination"], rules.sources.get("iv_fluid_contamination")
            for i in np.flatnonzero(own).tolist():
                name = names[analyte[i]]
                iv = rules.iv_fluid[name]
                p = int(chosen[i])
                if percent[i]:
                    limit, comparison, change_unit = iv.change_percent_at_most, "<=", "%"
                else:
                    limit, comparison, change_unit = iv.rise_at_least, ">=", rules.canonical_units[name]
                out.append((i, Reason("iv_fluid_contamination", action, True, source,
                                      (("analyte", name), ("previous", float(previous.value[p])),
                                       ("value", float(value[i])), ("unit", rules.canonical_units[name]),
                                       ("change", float(change[i])), ("change_unit", change_unit), ("limit", limit),
                                       ("comparison", comparison), ("previous_at", previous.moments[p]),
                                       ("window_hours", rules.iv_window_hours)))))
            for i in np.flatnonzero(specimen).tolist():
                out.append((i, Reason("iv_fluid_contamination", action, True, source,
                                      (("trigger", names[analyte[trigger[i]]]),), "specimen")))
        if self._delta is not None:
            hit, chosen, change, basis_percent = self._delta
            action = rules.actions["delta_check"]
            for i in np.flatnonzero(hit).tolist():
                name = names[analyte[i]]
                rule = rules.delta[name]
                p = int(chosen[i])
                if basis_percent[i]:
                    limit = rule.limit_percent(rules.delta_z)
                    change_unit, basis = "%", "percent" if rule.percent_limit is not None else "rcv"
                else:
                    limit, change_unit, basis = rule.absolute_limit, rules.canonical_units[name], "absolute"
                out.append((i, Reason("delta_check", action, True, rule.source or rules.sources.get("delta_check"),
                                      (("analyte", name), ("previous", float(previous.value[p])),
                                       ("value", float(value[i])), ("unit", rules.canonical_units[name]),
                                       ("change", float(change[i])), ("change_unit", change_unit), ("limit", limit),
                                       ("basis", basis), ("cvi_percent", rule.cvi_percent),
                                       ("cvi_source", rule.cvi_source), ("cva_percent", rule.cva_percent),
                                       ("z", rules.delta_z if basis == "rcv" else None),
                                       ("window_hours", rule.window_hours),
                                       ("previous_at", previous.moments[p])))))
        return out


# the columns of _parameters: 1.0 (yes) or 0.0, limits and windows (NaN: none)
_K, _LOW_CALCIUM, _SUPPORTING, _AFFECTS, _IV, _IV_AT_MOST, _IV_RISE, _DELTA, _DELTA_ABSOLUTE, _DELTA_PERCENT, \
    _DELTA_WINDOW, _IV_PERCENT, _IV_BY_RISE = range(13)


def _parameters(rules: VerificationRules, names: Sequence[str], analyte: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Per row, its analyte's parameters of the specimen and history rules (one table per laboratory's rules)."""
    known = rules.analyte_parameters
    return np.array([known[name] for name in names], dtype=np.float64).reshape(-1, 13)[analyte]


def _analyte_parameters(rules: VerificationRules, name: str) -> tuple[float, ...]:
    """One analyte's row of the table: 1.0 (yes) or 0.0, limits and windows (NaN: none)."""
    e, iv, delta = rules.edta, rules.iv_fluid.get(name), rules.delta.get(name)
    return (float(name == "potassium"), float(name in e.low_calcium), float(name in e.supporting),
            float(name in e.affects), float(iv is not None),
            _or_none(None if iv is None else iv.change_percent_at_most),
            _or_none(None if iv is None else iv.rise_at_least), float(delta is not None),
            _or_none(None if delta is None else delta.absolute_limit),
            _or_none(None if delta is None else delta.limit_percent(rules.delta_z)),
            _or_none(None if delta is None else delta.window_hours),
            float(iv is not None and iv.change_percent_at_most is not None),
            float(iv is not None and iv.rise_at_least is not None))


def _specimen_first(rows: ResultColumns, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Per row, the first row of its specimen where mask holds (-1: none)."""
    n = len(mask)
    first = np.minimum.reduceat(np.where(mask, np.arange(n), n), rows.starts)
    first = np.repeat(first, np.diff(np.append(rows.starts, n)))
    return np.where(first < n, first, -1)


def _edta(rules: VerificationRules, rows: ResultColumns, parameters: npt.NDArray[Any]) -> tuple[
        npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """Rows held for EDTA contamination, and per row its specimen's first high potassium, first low calcium
    and first low supporting result (-1: none)."""
    if not rules.on("edta_contamination") or not len(rows.value):
        return None
    comparator = rows.comparator
    high_k = ((parameters[:, _K] > 0) & (rows.value >= rules.edta.potassium_at_least)
              & ~((comparator == 1) | (comparator == 2)))
    if not high_k.any():
        return None
    low = rows.low > 0
    low_ca = (parameters[:, _LOW_CALCIUM] > 0) & low
    if not low_ca.any():
        return None
    k_row, ca_row = _specimen_first(rows, high_k), _specimen_first(rows, low_ca)
    hit = (parameters[:, _AFFECTS] > 0) & (k_row >= 0) & (ca_row >= 0)
    if not hit.any():
        return None
    return hit, k_row, ca_row, _specimen_first(rows, (parameters[:, _SUPPORTING] > 0) & low)


def _iv_fluid(rules: VerificationRules, rows: ResultColumns, parameters: npt.NDArray[Any],
              previous: PreviousColumns, query: npt.NDArray[np.int64], candidate: npt.NDArray[np.int64]) -> tuple[
        npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64],
        npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """Rows whose own result suggests intravenous fluid, the other rows of their specimens, per row the first
    such row of its specimen, the previous result compared with, the change, and whether it is in percent."""
    if not rules.on("iv_fluid_contamination"):
        return None
    applies = (parameters[:, _IV] > 0) & (rows.comparator == 0)
    keep = applies[query]
    if not keep.any():
        return None
    hours = _NONE if rules.iv_window_hours is None else rules.iv_window_hours
    chosen = latest_previous(rows, previous, query[keep], candidate[keep], hours)
    found = chosen >= 0
    found[found] = ~previous.off_scale[chosen[found]]
    at_most, rise = parameters[:, _IV_AT_MOST], parameters[:, _IV_RISE]
    before = previous.value[np.maximum(chosen, 0)]
    percent = found & (parameters[:, _IV_PERCENT] > 0) & (before > 0)
    by_rise = found & ~percent & (parameters[:, _IV_BY_RISE] > 0)
    rise_by = rows.value - before
    change = np.where(percent, rise_by / np.where(percent, before, 1.0) * 100.0, rise_by)
    own = (percent & (change <= at_most)) | (by_rise & (change >= rise))
    if not own.any():
        return None
    trigger = _specimen_first(rows, own)  # the specimen is suspect as a whole: its other results are held with it
    return own, (trigger >= 0) & ~own, trigger, chosen, change, percent


def _delta(rules: VerificationRules, rows: ResultColumns, parameters: npt.NDArray[Any], previous: PreviousColumns,
           query: npt.NDArray[np.int64], candidate: npt.NDArray[np.int64]) -> tuple[
        npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """Rows held by the delta check, per row the previous result compared with, the change shown, and whether
    it is in percent."""
    if not rules.on("delta_check") or not rules.delta:
        return None
    applies = (parameters[:, _DELTA] > 0) & (rows.comparator == 0)
    keep = applies[query]
    if not keep.any():
        return None
    chosen = latest_previous(rows, previous, query[keep], candidate[keep], parameters[:, _DELTA_WINDOW])
    found = chosen >= 0
    found[found] = ~previous.off_scale[chosen[found]]
    absolute, percent = parameters[:, _DELTA_ABSOLUTE], parameters[:, _DELTA_PERCENT]
    before = previous.value[np.maximum(chosen, 0)]
    by_absolute = found & ~np.isnan(absolute)
    by_percent = found & ~by_absolute & ~np.isnan(percent) & (before > 0)
    change = rows.value - before
    shown = np.where(by_percent, change / np.where(by_percent, before, 1.0) * 100.0, change)
    hit = (by_absolute | by_percent) & ~(np.abs(shown) <= np.where(by_absolute, absolute, percent))
    if not hit.any():
        return None
    return hit, chosen, shown, by_percent


def _or_none(limit: float | None) -> float:
    return _NONE if limit is None else limit
