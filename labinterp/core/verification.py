"""Verification: may a result be released, or must the laboratory look first (each rule once, as codes)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import NamedTuple, Protocol

from labinterp.core.engine import Engine, refused
from labinterp.core.errors import FieldError, InvalidInput
from labinterp.core.knowledge import Critical, Implausible, Knowledge
from labinterp.core.model import COMPARATORS, Panel
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


def check_facts(request: VerificationInput, k: Knowledge) -> list[FieldError]:
    """Problems with the per-result facts (the schema checks types; this checks what is left)."""
    errors: list[FieldError] = []
    for i, index in enumerate(request.hemolysis_index):
        if index is not None and (not math.isfinite(index) or index < 0):
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
    delta check), adding to each result's reasons in `per` (aligned with results and times)."""
    _edta(rules, results, per)
    if not previous:
        return  # nothing to compare with
    of: dict[str, list[PreviousResult]] = {}  # each rule reads the previous results of its result's analyte
    for p in previous:
        found = of.get(p.analyte)
        if found is None:
            of[p.analyte] = [p]
        else:
            found.append(p)
    _iv_fluid(rules, results, times, of, per)
    if rules.on("delta_check"):
        for i, r in enumerate(results):
            _delta(rules, r, times[i], of.get(r.analyte, ()), per[i])


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


def _edta(rules: VerificationRules, results: Sequence[Measured], per: list[list[Reason]]) -> None:
    if not rules.on("edta_contamination"):
        return
    e = rules.edta
    high_k = [r for r in results if r.analyte == "potassium" and r.value >= e.potassium_at_least
              and r.comparator not in ("<", "<=")]
    if not high_k:
        return
    low_ca = [r for r in results if r.analyte in e.low_calcium and r.verdict.flag in LOW_FLAGS]
    if not low_ca:
        return
    low_mg = [r for r in results if r.analyte in e.supporting and r.verdict.flag in LOW_FLAGS]
    details: tuple[tuple[str, Detail], ...] = (
        ("potassium", high_k[0].value), ("potassium_at_least", e.potassium_at_least), ("unit", "mmol/L"),
        ("low_analyte", low_ca[0].analyte), ("low_value", low_ca[0].value), ("low_flag", low_ca[0].verdict.flag),
        ("supporting_analyte", low_mg[0].analyte if low_mg else None),
        ("supporting_value", low_mg[0].value if low_mg else None))
    variant = "with_magnesium" if low_mg else None
    for i, r in enumerate(results):
        if r.analyte in e.affects:
            per[i].append(Reason("edta_contamination", rules.actions["edta_contamination"], True, e.source,
                                 details, variant))


def latest_previous(previous: Iterable[PreviousResult], analyte: str, now: datetime | None,
                    window_hours: float | None) -> PreviousResult | None:
    """The most recent earlier result of the analyte (within the window when one is set).

    Without times, the last one given is the most recent; a window needs both times."""
    best: PreviousResult | None = None
    for p in previous:
        if p.analyte != analyte:
            continue
        if now is not None and p.collected_at is not None:
            hours = (now - p.collected_at).total_seconds() / 3600.0
            if hours <= 0 or (window_hours is not None and hours > window_hours):
                continue
        elif window_hours is not None:
            continue
        if best is None or best.collected_at is None or (p.collected_at is not None
                                                          and p.collected_at >= best.collected_at):
            best = p
    return best


def _iv_fluid(rules: VerificationRules, results: Sequence[Measured], times: Sequence[datetime | None],
              previous: dict[str, list[PreviousResult]], per: list[list[Reason]]) -> None:
    """previous: the patient's earlier results by analyte."""
    if not rules.on("iv_fluid_contamination"):
        return
    trigger: tuple[int, Reason] | None = None
    for i, r in enumerate(results):
        rule = rules.iv_fluid.get(r.analyte)
        if rule is None or r.comparator is not None:
            continue
        p = latest_previous(previous.get(r.analyte, ()), r.analyte, times[i], rules.iv_window_hours)
        if p is None or p.comparator is not None:
            continue
        change: float
        if rule.change_percent_at_most is not None and p.value > 0:
            change = (r.value - p.value) / p.value * 100.0
            hit = change <= rule.change_percent_at_most
            limit, comparison, change_unit = rule.change_percent_at_most, "<=", "%"
        elif rule.rise_at_least is not None:
            change = r.value - p.value
            hit = change >= rule.rise_at_least
            limit, comparison, change_unit = rule.rise_at_least, ">=", _unit(rules, r)
        else:
            continue
        if hit:
            reason = Reason("iv_fluid_contamination", rules.actions["iv_fluid_contamination"], True,
                            rules.sources.get("iv_fluid_contamination"),
                            (("analyte", r.analyte), ("previous", p.value), ("value", r.value),
                             ("unit", _unit(rules, r)), ("change", change), ("change_unit", change_unit),
                             ("limit", limit),
                             ("comparison", comparison), ("previous_at", p.collected_at),
                             ("window_hours", rules.iv_window_hours)))
            per[i].append(reason)
            trigger = trigger or (i, reason)
    if trigger is None:
        return
    # The specimen is suspect as a whole: every other result of it is held with it.
    first, reason = trigger
    for i in range(len(results)):
        if i != first and not any(x.code == "iv_fluid_contamination" for x in per[i]):
            per[i].append(Reason(reason.code, reason.action, True, reason.source,
                                 (("trigger", results[first].analyte),), "specimen"))


def _delta(rules: VerificationRules, r: Measured, now: datetime | None, previous: Sequence[PreviousResult],
           reasons: list[Reason]) -> None:
    """previous: the patient's earlier results of r's analyte (the caller checks that the rule is on)."""
    rule = rules.delta.get(r.analyte)
    if not previous or rule is None or r.comparator is not None:
        return
    p = latest_previous(previous, r.analyte, now, rule.window_hours)
    if p is None or p.comparator is not None:
        return
    change = r.value - p.value
    if rule.absolute_limit is not None:
        limit, change_shown, change_unit = rule.absolute_limit, change, _unit(rules, r)
        basis = "absolute"
    else:
        percent = rule.limit_percent(rules.delta_z)
        if percent is None or p.value <= 0:
            return
        limit, change_shown, change_unit = percent, change / p.value * 100.0, "%"
        basis = "percent" if rule.percent_limit is not None else "rcv"
    if abs(change_shown) <= limit:
        return
    source = rule.source or rules.sources.get("delta_check")
    reasons.append(Reason("delta_check", rules.actions["delta_check"], True, source,
                          (("analyte", r.analyte), ("previous", p.value), ("value", r.value),
                           ("unit", _unit(rules, r)), ("change", change_shown), ("change_unit", change_unit),
                           ("limit", limit),
                           ("basis", basis), ("cvi_percent", rule.cvi_percent), ("cvi_source", rule.cvi_source),
                           ("cva_percent", rule.cva_percent), ("z", rules.delta_z if basis == "rcv" else None),
                           ("window_hours", rule.window_hours), ("previous_at", p.collected_at))))


def _no_interval(rules: VerificationRules, r: Measured, reasons: list[Reason]) -> None:
    if not rules.on("no_interval") or r.verdict.reason != "no_interval":
        return
    reasons.append(Reason("no_interval", rules.actions["no_interval"], True, None,
                          (("reason", r.interval_reason),)))


def _unit(rules: VerificationRules, r: Measured) -> str:
    return rules.canonical_units[r.analyte]
