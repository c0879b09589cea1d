"""The interpretation engine for panels: validate, normalise, then apply the rules (rules.py) to typed outcomes.

Every door (JSON API, batch, FHIR, CDS Hooks, HL7 v2, web page) ends in `Engine.interpret` or
`Engine.interpret_many`; files go through `columnar.py`, which applies the same rules.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import field
from typing import Any

from labinterp.core.errors import FieldError, InvalidInput
from labinterp.core.frozen import frozen
from labinterp.core.knowledge import LOINC_SYSTEMS, Critical, Interval, Knowledge
from labinterp.core.model import (
    COMPARATOR_CODES,
    COMPARATORS,
    HEMOLYSIS,
    SEXES,
    SPECIMENS,
    Panel,
    Patient,
    ResultInput,
)
from labinterp.core.outcomes import (
    CLASSIFICATIONS,
    FLAGS,
    REASONS,
    CodeRead,
    Derived,
    Member,
    Note,
    Outcome,
    PanelOutcome,
    PatternHit,
    SentRange,
    Verdict,
)
from labinterp.core.rules import (
    Edges,
    PanelFindings,
    RowKey,
    SegmentTable,
    complete_sent_range,
    corrected_applies,
    corrected_calcium,
    corrected_pair,
    derived_notes,
    edges_for,
    limits_analyte,
    panel_rules,
    result_notes,
    row_key,
    select_critical,
    select_interval,
    sent_range_notes,
)
from labinterp.core.units import describe_dimension

MAX_SEGMENT_TABLES = 4096
# Interpreted results by (analyte, flag, critical): what a door that keeps metrics is told.
Tally = Counter[tuple[str, str | None, bool]]


@frozen
class Prepared:
    """One result after validation: analyte, unit and interval resolved, value canonical."""

    index: int
    id: str | None
    analyte: str
    loinc: str | None
    input_value: float
    input_unit: str
    ucum: str
    factor: float
    value: float
    comparator: str | None
    specimen: str
    hemolysis: str | None
    interval: Interval | None
    interval_reason: str | None
    sent: SentRange | None
    critical: Critical | None
    notes: tuple[Note, ...]
    edges: Edges
    code: CodeRead | None = None
    # The segment tables of this result's rules by comparator, shared by every result with the same rules
    # (the rows of classify_columns they answer differ only by value); None: a range was sent with it.
    tables: dict[str | None, SegmentTable] | None = field(default=None, compare=False, repr=False)


@frozen
class Staged:
    """One panel ready for classification: its prepared results, and rows (results + derived)."""

    knowledge: Knowledge
    patient: Patient
    prepared: list[Prepared]
    rows: list[Prepared]
    pair: tuple[int, int] | None


class Engine:
    """Interprets panels against one set of reference data (and its laboratory profiles).

    `observe`, when given, is told the tally of every interpretation (a door that keeps metrics)."""

    def __init__(self, knowledge: Knowledge, observe: Callable[[Tally], None] | None = None):
        self.knowledge = knowledge
        self.observe = observe
        self._names = {a.id for a in knowledge.analytes.values() if not a.derived}
        self._segments: dict[RowKey, SegmentTable] = {}  # classify_columns' answers per distinct row
        # Rules applied once per distinct key (bounded; the keys are few): a unit spelling's code and
        # factor for an analyte, and the panel rules' findings for a panel's signature.
        self._units: dict[tuple[int, str, str], tuple[str, float]] = {}
        self._findings: dict[tuple[object, ...], PanelFindings] = {}

    # ------------------------------------------------------------------ public
    def profile(self, lab: str | None) -> Knowledge:
        if lab is None:
            return self.knowledge
        try:
            return self.knowledge.profiles[lab]
        except KeyError:
            known = sorted(self.knowledge.profiles) or "none configured"
            raise InvalidInput([refused(self.knowledge, ("lab",), "unknown_lab", "unknown_lab", lab=lab,
                                        known=known)]) from None

    def interpret(self, panel: Panel) -> PanelOutcome:
        """Interpret one panel; raises InvalidInput naming every bad field."""
        return self.interpret_many([self.stage(panel)])[0]

    def interpret_many(self, panels: list[Staged]) -> list[PanelOutcome]:
        """Interpret staged panels (a batch: each may use another laboratory profile)."""
        outcomes = [self._outcome(staged, [self.classify(staged.knowledge, row) for row in staged.rows])
                    for staged in panels]
        if self.observe is not None:
            self.observe(tally(outcomes))
        return outcomes

    def classify(self, k: Knowledge, p: Prepared) -> Verdict:
        """classify_columns' verdict for one prepared result, through its row's segment table."""
        table = None if p.tables is None else p.tables.get(p.comparator)
        if table is None:
            key = self.row_key(k, p)
            table = self._segments.get(key)
            if table is None:
                if len(self._segments) > MAX_SEGMENT_TABLES:  # bounded: keys are few (rules x families x ages)
                    self._segments.clear()
                table = self._segments[key] = SegmentTable(key)
            if p.tables is not None:
                p.tables[p.comparator] = table
        cls, flag, critical, reason, grade = table.verdict(p.value)
        return Verdict(CLASSIFICATIONS[cls], FLAGS[flag], critical, REASONS[reason], grade)

    def stage(self, panel: Panel) -> Staged:
        """Validate and prepare one panel (plus its derived row): the part before classification."""
        k = self.profile(panel.lab)
        prepared = self.prepare(k, panel)
        pair = corrected_pair([(p.analyte, p.comparator is not None) for p in prepared])
        rows = list(prepared)
        if pair is not None:
            rows.append(self._corrected_row(k, prepared[pair[0]], prepared[pair[1]]))
        return Staged(k, panel.patient or Patient(), prepared, rows, pair)

    def refusal(self, panel: Panel) -> list[FieldError]:
        """The reasons the panel would be refused (none: it can be interpreted)."""
        try:
            self.prepare(self.profile(panel.lab), panel)
        except InvalidInput as exc:
            return exc.errors
        return []

    # ------------------------------------------------------------- preparation
    def prepare(self, k: Knowledge, panel: Panel) -> list[Prepared]:
        errors: list[FieldError] = []
        patient = panel.patient or Patient()
        if panel.specimen is not None and panel.specimen not in SPECIMENS:
            errors.append(refused(k, ("specimen",), "invalid_choice", "invalid_choice", choices=list(SPECIMENS)))
        if patient.sex is not None and patient.sex not in SEXES:
            errors.append(refused(k, ("patient", "sex"), "invalid_choice", "invalid_choice", choices=list(SEXES)))
        if patient.age_days is not None and (not _finite(patient.age_days) or patient.age_days < 0):
            errors.append(refused(k, ("patient",), "invalid_age", "invalid_age"))
        if not panel.results:
            errors.append(refused(k, ("results",), "no_results", "empty"))
        out: list[Prepared] = []
        for index, result in enumerate(panel.results):
            prepared = self._prepare_one(k, panel, patient, index, result, errors)
            if prepared is not None:
                out.append(prepared)
        if errors:
            raise InvalidInput(errors)
        return out

    def _prepare_one(self, k: Knowledge, panel: Panel, patient: Patient, index: int,
                     r: ResultInput, errors: list[FieldError]) -> Prepared | None:
        here = ("results", index)
        count = len(errors)
        analyte, code = self.resolve_code(k, r.analyte, r.code_system)
        loinc = code.code if code is not None and code.origin == "loinc" else None
        loinc_specimen = code.specimen if code is not None else None
        if analyte is None:
            errors.append(self._unknown_code(k, (*here, "analyte"), r.analyte, r.code_system))
        if isinstance(r.value, str):  # text a file or message sent: named, with the forms that are read
            errors.append(refused(k, (*here, "value"), "value_text", "invalid_number", value=_clip(r.value)))
        elif isinstance(r.value, bool) or not isinstance(r.value, (int, float)) or not _finite(r.value):
            errors.append(refused(k, (*here, "value"), "not_finite", "invalid_number"))
        elif r.value < 0:
            errors.append(refused(k, (*here, "value"), "negative", "negative"))
        if r.comparator is not None and r.comparator not in COMPARATORS:
            errors.append(refused(k, (*here, "comparator"), "invalid_choice", "invalid_choice",
                                  choices=list(COMPARATORS)))
        if r.hemolysis is not None and r.hemolysis not in HEMOLYSIS:
            errors.append(refused(k, (*here, "hemolysis"), "invalid_choice", "invalid_choice", choices=list(HEMOLYSIS)))
        specimen = r.specimen or loinc_specimen or panel.specimen or "serum"
        if r.specimen is not None and r.specimen not in SPECIMENS:
            errors.append(refused(k, (*here, "specimen"), "invalid_choice", "invalid_choice", choices=list(SPECIMENS)))
        elif r.specimen and loinc_specimen and r.specimen != loinc_specimen:
            assert code is not None
            errors.append(refused(k, (*here, "specimen"), "specimen_conflict", "conflict",
                                  code=_code_label(k, code), specimen=loinc_specimen, sent=r.specimen))
        unit: Any = r.unit
        unit_notes: tuple[Note, ...] = ()
        if (not isinstance(r.unit, str) or not r.unit.strip()) and code is not None and code.unit:
            unit, unit_notes = code.unit, (Note("unit_from_code"),)  # the profile says what its code implies
        ucum, factor = None, None
        if analyte is not None:
            ucum, factor = self.resolve_unit(k, analyte, unit, (*here, "unit"), errors)
        sent = None
        # a range in the result's own unit is not checked again when that unit was refused: one cause, one error
        if r.reference_interval is not None and analyte is not None and (
                factor is not None or r.reference_interval.unit is not None):
            sent = self._sent_range(k, analyte, r, (*here, "reference_interval"), errors)
        if len(errors) > count or analyte is None or factor is None or ucum is None:
            return None
        value = float(r.value) * factor
        selection = select_interval(k, analyte, specimen, patient)
        completion: tuple[Note, ...] = ()
        if sent is not None:
            sent, note = complete_sent_range(sent, selection)
            completion = () if note is None else (note,)
        if sent is None:
            interval, reason, notes = selection.interval, selection.reason, selection.notes
        else:
            interval, reason, notes = None, None, sent_range_notes(patient)
        critical = select_critical(k, analyte, patient.age_days)
        edges, tables = _edges(k, analyte, ucum, interval, critical)
        return Prepared(index, r.id, analyte, loinc, float(r.value), unit, ucum, factor, value,
                        r.comparator, specimen, r.hemolysis, interval, reason, sent, critical,
                        unit_notes + completion + notes, edges, code, None if sent is not None else tables)

    def resolve_analyte(self, k: Knowledge, text: Any, system: Any = None
                        ) -> tuple[str | None, str | None, str | None]:
        """(analyte, LOINC code, the specimen the code implies) for a name, a LOINC code or a local code."""
        analyte, code = self.resolve_code(k, text, system)
        if code is None:
            return analyte, None, None  # a name: LOINC chosen once the unit is known
        return analyte, code.code if code.origin == "loinc" else None, code.specimen

    def resolve_code(self, k: Knowledge, text: Any, system: Any = None) -> tuple[str | None, CodeRead | None]:
        return resolve_code(k, text, system)

    def _unknown_code(self, k: Knowledge, path: tuple[str | int, ...], text: Any, system: Any) -> FieldError:
        known = sorted(c for c, v in k.loinc.items() if not k.analytes[v.analyte].derived)
        shown = _clip(text)
        if isinstance(system, str) and system.strip() and system.strip() not in LOINC_SYSTEMS:
            if k.lab:
                return refused(k, path, "unknown_local_code_in_profile", "unknown_analyte", code=shown,
                               system=_clip(system), lab=k.lab)
            return refused(k, path, "unknown_local_code_no_profile", "unknown_analyte", code=shown,
                           system=_clip(system))
        if isinstance(system, str) and system.strip():
            return refused(k, path, "unknown_loinc", "unknown_analyte", code=shown, known=known)
        local = sorted({c for (_, c) in k.local_codes})
        also = k.words["refusal.also_local_codes"].format(local=local) if local else ""
        return refused(k, path, "unknown_analyte", "unknown_analyte", analyte=shown, names=sorted(self._names),
                       known=known, also=also)

    def resolve_unit(self, k: Knowledge, analyte: str, text: Any, path: tuple[str | int, ...],
                     errors: list[FieldError]) -> tuple[str | None, float | None]:
        """(UCUM code, factor to the canonical unit), or an error naming `path`: never a guess."""
        known = self._units.get((id(k), analyte, text)) if isinstance(text, str) else None
        if known is not None:
            return known
        if not isinstance(text, str) or not text.strip():
            errors.append(refused(k, path, "missing_unit", "missing_unit"))
            return None, None
        ucum = k.resolve_unit(text)
        if ucum is None:
            accepted = ", ".join(k.accepted_units(analyte))
            kind = describe_dimension(text.strip())
            if kind is not None:
                errors.append(refused(k, path, "wrong_dimension", "wrong_dimension", unit=_clip(text),
                                      kind=k.words[f"dimension.{kind}"], analyte=analyte, accepted=accepted))
            else:
                errors.append(refused(k, path, "unknown_unit", "unknown_unit", unit=_clip(text), analyte=analyte,
                                      accepted=accepted))
            return None, None
        factor = k.factor(analyte, ucum)
        if factor is None:
            accepted = ", ".join(k.accepted_units(analyte))
            analyte_def = k.analytes[analyte]
            why = k.words["refusal.no_molar_mass" if analyte_def.molar_mass is None else "refusal.no_valence"]
            errors.append(refused(k, path, "incompatible_unit", "incompatible_unit", ucum=ucum, analyte=analyte,
                                  why=why, accepted=accepted))
            return None, None
        if len(self._units) > MAX_SEGMENT_TABLES:
            self._units.clear()
        self._units[(id(k), analyte, text)] = (ucum, factor)  # k lives as long as the engine: its id is its own
        return ucum, factor

    def sent_range(self, k: Knowledge, analyte: str, r: ResultInput, path: tuple[str | int, ...],
                   errors: list[FieldError]) -> SentRange | None:
        """The range sent with a result in canonical units, or None with errors naming `path` (the file
        path reads its per-row ranges through this too)."""
        return self._sent_range(k, analyte, r, path, errors)

    def _sent_range(self, k: Knowledge, analyte: str, r: ResultInput, path: tuple[str | int, ...],
                    errors: list[FieldError]) -> SentRange | None:
        sent = r.reference_interval
        assert sent is not None
        count = len(errors)
        for side in ("low", "high"):
            bound = getattr(sent, side)
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not _finite(bound) or bound < 0):
                errors.append(refused(k, (*path, side), "bound_invalid", "invalid_number"))
        if sent.low is None and sent.high is None:
            errors.append(refused(k, path, "empty_interval", "empty_interval"))
        elif (sent.low is not None and sent.high is not None and len(errors) == count
              and sent.low >= sent.high):
            errors.append(refused(k, path, "inverted_interval", "inverted_interval"))
        ucum, factor = self.resolve_unit(k, analyte, sent.unit if sent.unit is not None else r.unit,
                                         (*path, "unit"), errors)
        if len(errors) > count or factor is None or ucum is None:
            return None
        return SentRange(None if sent.low is None else sent.low * factor,
                         None if sent.high is None else sent.high * factor, sent, sent.unit or r.unit, ucum)

    # --------------------------------------------------------------- columns
    @staticmethod
    def row_key(k: Knowledge, p: Prepared) -> RowKey:
        """The parameters classify_columns reads for this result, but its value."""
        e, nan = p.edges, math.nan
        if p.sent is not None:  # the laboratory's own bounds, inclusive, as sent
            has = True
            low = nan if p.sent.low is None else p.sent.low
            high = nan if p.sent.high is None else p.sent.high
        else:
            has, low, high = p.interval is not None, e.low, e.high
        implausible = k.implausible.get(limits_analyte(p.analyte))
        return row_key(COMPARATOR_CODES[p.comparator], has, low, high, e.critical_low, e.critical_low_inclusive,
                       e.critical_high, e.critical_high_inclusive,
                       nan if implausible is None or implausible.low is None else implausible.low,
                       nan if implausible is None or implausible.high is None else implausible.high,
                       e.grade_low, e.grade_high, p.sent is not None)

    # ------------------------------------------------------- corrected calcium
    @staticmethod
    def _corrected_row(k: Knowledge, calcium: Prepared, albumin: Prepared) -> Prepared:
        cc = k.corrected_calcium
        ca_factor = k.factors[("calcium", cc.calcium_unit)]
        alb_factor = k.factors[("albumin", cc.albumin_unit)]
        corrected, value = corrected_calcium(cc, calcium.value, albumin.value, ca_factor, alb_factor)
        # compared in the unit family the calcium was measured in (CTCAE prints both columns)
        edges, tables = _edges(k, "corrected_calcium", calcium.ucum, calcium.interval, calcium.critical)
        return Prepared(
            -1, None, "corrected_calcium", k.analytes["corrected_calcium"].loinc[0].code,
            corrected, cc.calcium_unit, cc.calcium_unit, ca_factor, value, None, calcium.specimen, None,
            calcium.interval, calcium.interval_reason, calcium.sent, calcium.critical,
            derived_notes(calcium.notes), edges, None, None if calcium.sent is not None else tables)

    # --------------------------------------------------------------- outcomes
    def _outcome(self, staged: Staged, verdicts: list[Verdict]) -> PanelOutcome:
        k, prepared, rows = staged.knowledge, staged.prepared, staged.rows
        derived_verdict = verdicts[-1] if staged.pair is not None else None
        signature = (id(k), tuple([(p.analyte, verdicts[i].classification, verdicts[i].reason)
                                   for i, p in enumerate(prepared)]), staged.pair,
                     None if derived_verdict is None else derived_verdict.classification,
                     corrected_applies(k.corrected_calcium, staged.patient.age_days))
        findings = self._findings.get(signature)
        if findings is None:
            if len(self._findings) > MAX_SEGMENT_TABLES:
                self._findings.clear()
            _, panel_rows, pair, derived_classification, adult = signature
            findings = self._findings[signature] = panel_rules(k.patterns, panel_rows, pair, derived_classification,
                                                               k.corrected_calcium, adult)
        symptoms_from: dict[int, str] = {}
        if staged.pair is not None and findings.kept and derived_verdict is not None:
            symptoms_from[staged.pair[0]] = derived_verdict.classification
        results = tuple(self._result(k, p, verdicts[i], findings.row_notes[i], symptoms_from.get(i))
                        for i, p in enumerate(prepared))
        derived: tuple[Derived, ...] = ()
        if staged.pair is not None and findings.kept:
            assert derived_verdict is not None
            calcium, albumin = prepared[staged.pair[0]], prepared[staged.pair[1]]
            derived = (Derived(self._result(k, rows[-1], derived_verdict, findings.derived_notes),
                               k.corrected_calcium, Member(calcium.index, calcium.id, "calcium", None),
                               Member(albumin.index, albumin.id, "albumin", None)),)
        patterns = tuple(PatternHit(pattern, tuple(_member(results, derived, i) for i in members))
                         for pattern, members in findings.patterns)
        caveats = tuple(k.caveats_for(staged.patient.sex, staged.patient.age_days))
        return PanelOutcome(results, derived, patterns, k, caveats)

    def _result(self, k: Knowledge, p: Prepared, verdict: Verdict, panel_notes: tuple[Note, ...],
                symptoms_from: str | None = None) -> Outcome:
        notes = p.notes + result_notes(p.analyte, p.specimen, p.hemolysis, verdict.classification, verdict.reason,
                                       p.critical, p.sent is not None) + panel_notes
        side = {"hypo": "low", "hyper": "high"}.get(verdict.classification)
        if side is None:  # graded beyond an absolute CTCAE edge although the sent range calls it normal
            low_term = k.ctcae.get((p.analyte, "low"))
            side = "low" if low_term is not None and p.value < low_term.edges[0] else "high"
        term = k.ctcae.get((p.analyte, side))
        return Outcome(
            p.index if p.index >= 0 else None, p.id, p.analyte,
            p.loinc or usual_loinc(k, p.analyte, p.ucum, p.specimen),
            p.input_value, p.input_unit, p.ucum, p.factor, p.value, p.comparator, p.specimen, p.hemolysis,
            p.interval, p.sent, p.interval_reason, p.critical, k.implausible.get(limits_analyte(p.analyte)),
            term if verdict.grade else None, verdict, notes, p.edges.compared, symptoms_from, p.code)


def _edges(k: Knowledge, analyte: str, ucum: str, interval: Interval | None, critical: Critical | None
           ) -> tuple[Edges, dict[str | None, SegmentTable]]:
    """rules.edges_for, remembered per (knowledge, rules, family), with the segment tables of those rules
    by comparator (filled as met): the rule objects live as long as the knowledge that holds them, so
    their identities are stable keys, and the rules with the comparator fix classify_columns' row."""
    family = k.unit_family(ucum)
    key = (id(k), analyte, id(interval), id(critical), family)
    found = _EDGES.get(key)
    if found is None:
        if len(_EDGES) > MAX_SEGMENT_TABLES:
            _EDGES.clear()
        found = _EDGES[key] = (edges_for(interval, critical, k.ctcae.get((analyte, "low")),
                                         k.ctcae.get((analyte, "high")), family), {}, k)
    return found[0], found[1]


# the knowledge is kept so its id stays its own
_EDGES: dict[tuple[object, ...], tuple[Edges, dict[str | None, SegmentTable], Knowledge]] = {}


def resolve_code(k: Knowledge, text: Any, system: Any = None) -> tuple[str | None, CodeRead | None]:
    """(analyte, the code read and its meaning) for what a result names its analyte with: every door's
    one way. No system: an analyte name, a LOINC code, or a code the profile (codes.toml) maps under
    exactly one system. A LOINC system: LOINC only. Any other system: the profile's codes.toml only.
    (None, None): not known; never a guess from display text."""
    if not isinstance(text, str) or not text.strip():
        return None, None
    name = text.strip()
    given = system.strip() if isinstance(system, str) and system.strip() else None
    if given is None and name in k.analytes and not k.analytes[name].derived:
        return name, None
    if given is None or given in LOINC_SYSTEMS:
        loinc = k.loinc.get(name)
        if loinc is not None and not k.analytes[loinc.analyte].derived:
            return loinc.analyte, CodeRead(given, loinc.code, "loinc", loinc.analyte, loinc.property,
                                           loinc.specimen, loinc.display)
        if given is not None:
            return None, None
        matches = [c for (_, code), c in k.local_codes.items() if code == name]
        local = matches[0] if len(matches) == 1 else None
    else:
        local = k.local_codes.get((given, name))
    if local is None:
        return None, None
    return local.analyte, CodeRead(local.system, local.code, "laboratory", local.analyte, None, local.specimen,
                                   None, local.unit)


def usual_loinc(k: Knowledge, analyte: str, ucum: str, specimen: str) -> str:
    """The LOINC code of an analyte given by name: its specimen's code of the unit's property."""
    codes = k.analytes[analyte].loinc
    prop = "mass" if k.units[ucum].kind == "mass" else "molar"
    for code in codes:
        if code.specimen == specimen and code.property == prop:
            return code.code
    for code in codes:
        if code.specimen is None and code.property == prop:
            return code.code
    return next((c.code for c in codes if c.specimen is None), codes[0].code)


def tally(outcomes: list[PanelOutcome]) -> Tally:
    """Interpreted results (and derived values) by (analyte, flag, critical)."""
    counts: Tally = Counter()
    for outcome in outcomes:
        for r in (*outcome.results, *(d.outcome for d in outcome.derived)):
            counts[(r.analyte, r.verdict.flag, r.verdict.critical)] += 1
    return counts


def _member(results: tuple[Outcome, ...], derived: tuple[Derived, ...], position: int) -> Member:
    r = derived[0].outcome if position < 0 else results[position]
    return Member(r.index, r.id, r.analyte, r.verdict.flag)


def _code_label(k: Knowledge, code: CodeRead) -> str:
    if code.origin == "loinc":
        return k.words["refusal.code_label_loinc"].format(code=code.code)
    return k.words["refusal.code_label_local"].format(system=code.system, code=code.code)


def refused(k: Knowledge, path: tuple[str | int, ...], reason: str, error_code: str, /, **fields: Any) -> FieldError:
    """A field error: its code fixed here, its reason the data's words (messages.toml [refusal])."""
    return FieldError(path, k.words[f"refusal.{reason}"].format(**fields), error_code)


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _clip(text: Any, limit: int = 40) -> str:
    shown = str(text)
    return shown if len(shown) <= limit else shown[:limit] + "..."
