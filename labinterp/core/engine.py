"""The interpretation engine: normalise, classify, grade, and attach symptoms and warnings.

Every door (JSON API, FHIR, CDS Hooks, HL7 v2, CSV, CLI, web page) ends in `Engine.interpret`
or, for files, in `classify_columns`, which `interpret` uses too: one implementation of
each rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labinterp.core.errors import FieldError, InvalidInput
from labinterp.core.knowledge import Critical, CtcaeTerm, Interval, Knowledge, format_age
from labinterp.core.model import (
    COMPARATORS, HEMOLYSIS, SEXES, SPECIMENS, Panel, Patient, ResultInput, SentInterval,
)
from labinterp.core.units import describe_dimension

CLASSIFICATIONS = ("indeterminate", "hypo", "normal", "hyper")
FLAGS = (None, "LL", "L", "N", "H", "HH")
FLAG_DISPLAY = {"LL": "Critical low", "L": "Low", "N": "Normal", "H": "High", "HH": "Critical high"}
REASONS = (None, "implausible", "no_interval", "off_scale")
COMPARATOR_CODES = {None: 0, "<": 1, "<=": 2, ">": 3, ">=": 4}
ADULT_AGE_DAYS = 30 * 365.25  # used to pick age-banded limits when no age is given
CTCAE_VERSION = "5.0"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Columns:
    """Per-value inputs of the columnar classifier, all in canonical units.

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


@dataclass(frozen=True)
class Verdicts:
    """Per-value outputs: codes index CLASSIFICATIONS, FLAGS and REASONS; grade 0 = none."""

    classification: IntArray
    flag: IntArray
    critical: BoolArray
    reason: IntArray
    grade: IntArray


def classify_columns(c: Columns) -> Verdicts:
    """Classify whole columns at once: the one implementation of the classification rules.

    Order of precedence: implausible, then critical (at or beyond, with the comparison the
    source states), then off-scale without a critical verdict, then no interval, then the
    inclusive interval. An off-scale result counts as beyond a bound only when its whole
    possible range is: "<v" is tested as the largest float below v, ">v" as the smallest
    above, and a result open upwards can never be low (nor one open downwards high).
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
    implausible = point & ((v < c.implausible_low) | (v > c.implausible_high))
    plausible = ~implausible
    is_ll = plausible & (low_side <= critical_low)
    is_hh = plausible & ~is_ll & (high_side >= critical_high)
    critical = is_ll | is_hh
    by_interval = point & plausible & ~critical & c.has_interval
    outside_low = low_side < c.low
    outside_high = high_side > c.high
    is_l = by_interval & outside_low
    is_h = by_interval & outside_high
    is_n = by_interval & ~outside_low & ~outside_high
    hypo, hyper = is_ll | is_l, is_hh | is_h
    classification = (hypo * 1 + is_n * 2 + hyper * 3).astype(np.int8)
    flag = (is_ll * 1 + is_l * 2 + is_n * 3 + is_h * 4 + is_hh * 5).astype(np.int8)
    undecided = plausible & ~critical
    reason = (implausible * 1 + (undecided & ~point) * 3
              + (undecided & point & ~c.has_interval) * 2).astype(np.int8)
    low_steps = (low_side[:, None] < c.grade_low).sum(axis=1)
    high_steps = (high_side[:, None] > c.grade_high).sum(axis=1)
    graded_low = hypo & c.has_interval & outside_low & ~np.isnan(c.grade_low[:, 0])
    graded_high = hyper & c.has_interval & outside_high & ~np.isnan(c.grade_high[:, 0])
    grade = (graded_low * (1 + low_steps) + graded_high * (1 + high_steps)).astype(np.int8)
    return Verdicts(classification, flag, critical, reason, grade)


@dataclass(frozen=True)
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
    interval_origin: str | None
    interval_reason: str | None
    sent: SentInterval | None
    sent_low: float | None
    sent_high: float | None
    critical: Critical | None
    warnings: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Staged:
    """One panel ready for classification: its prepared results, and rows (results + derived)."""

    prepared: list[Prepared]
    rows: list[Prepared]
    derived_inputs: tuple[Prepared, Prepared] | None


class Engine:
    """Interprets panels against one set of reference data (and its laboratory profiles)."""

    def __init__(self, knowledge: Knowledge):
        self.knowledge = knowledge
        self._names = {a.id for a in knowledge.analytes.values() if not a.derived}
        self._interval_json: dict[int, dict[str, Any]] = {}
        self._critical_json: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------------ public
    def profile(self, lab: str | None) -> Knowledge:
        if lab is None:
            return self.knowledge
        try:
            return self.knowledge.profiles[lab]
        except KeyError:
            known = sorted(self.knowledge.profiles) or "none configured"
            raise InvalidInput([FieldError(("lab",), f"unknown laboratory profile '{lab}' (known: {known})",
                                           "unknown_lab")]) from None

    def interpret(self, panel: Panel) -> dict[str, Any]:
        """Interpret one panel; raises InvalidInput naming every bad field."""
        k = self.profile(panel.lab)
        staged = self.stage(k, panel)
        verdicts = classify_columns(self.columns(k, staged.rows))
        return self.assemble(k, staged, verdicts)

    def stage(self, k: Knowledge, panel: Panel) -> Staged:
        """Validate and prepare one panel (plus its derived row): the part before classification."""
        prepared = self.prepare(k, panel)
        derived_inputs = self._corrected_calcium_inputs(prepared)
        rows = list(prepared)
        if derived_inputs is not None:
            rows.append(self._corrected_row(k, *derived_inputs))
        return Staged(prepared, rows, derived_inputs)

    def counted(self, tally: dict[tuple[str, str | None, bool], int]) -> None:
        """Results interpreted without an answer being assembled (the columnar file path), by
        (analyte, flag, critical). Nothing here; a door that keeps metrics overrides it."""

    def assemble(self, k: Knowledge, staged: Staged, verdicts: Verdicts, offset: int = 0) -> dict[str, Any]:
        """The answer for one staged panel whose rows sit at `offset` in `verdicts` (many panels can
        share one classify_columns call)."""
        prepared, rows, derived_inputs = staged.prepared, staged.rows, staged.derived_inputs
        results = [self._result_json(k, p, verdicts, offset + i) for i, p in enumerate(prepared)]
        derived: list[dict[str, Any]] = []
        if derived_inputs is not None:
            derived_json = self._result_json(k, rows[-1], verdicts, offset + len(rows) - 1)
            calcium, albumin = derived_inputs
            if "implausible" in (results[calcium.index]["classification_reason"],
                                 results[albumin.index]["classification_reason"]):
                self._warn(k, results[calcium.index], "no_corrected_calcium",
                           reason="an input value is implausible")
            else:
                cc = k.corrected_calcium
                derived_json["formula"] = cc.formula
                derived_json["formula_source"] = k.source_title(cc.source)
                derived_json["derived_from"] = [
                    {"index": calcium.index, "id": calcium.id, "analyte": "calcium"},
                    {"index": albumin.index, "id": albumin.id, "analyte": "albumin"},
                ]
                self._warn(k, derived_json, "corrected_calcium_limitations", limitations=cc.limitations)
                derived.append(derived_json)
        self._panel_warnings(k, prepared, results, derived)
        return {
            "results": results,
            "derived": derived,
            "patterns": self._patterns(k, results, derived),
            "data_version": k.data_version,
            "laboratory": k.lab,
            "disclaimer": k.disclaimer,
            "symptoms_note": k.symptoms_note,
        }

    # ------------------------------------------------------------- preparation
    def prepare(self, k: Knowledge, panel: Panel) -> list[Prepared]:
        errors: list[FieldError] = []
        patient = panel.patient or Patient()
        if panel.specimen is not None and panel.specimen not in SPECIMENS:
            errors.append(FieldError(("specimen",), f"must be one of {list(SPECIMENS)}", "invalid_choice"))
        if patient.sex is not None and patient.sex not in SEXES:
            errors.append(FieldError(("patient", "sex"), f"must be one of {list(SEXES)}", "invalid_choice"))
        if patient.age_days is not None and (not _finite(patient.age_days) or patient.age_days < 0):
            errors.append(FieldError(("patient",), "age must be a finite number, not negative", "invalid_age"))
        if not panel.results:
            errors.append(FieldError(("results",), "at least one result is required", "empty"))
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
        analyte, loinc, loinc_specimen = self._resolve_analyte(k, r.analyte)
        if analyte is None:
            errors.append(FieldError((*here, "analyte"), f"unknown analyte '{_clip(r.analyte)}': use one of "
                                     f"{sorted(self._names)} or one of their LOINC codes "
                                     f"{sorted(c for c, v in k.loinc.items() if not k.analytes[v.analyte].derived)}",
                                     "unknown_analyte"))
        if isinstance(r.value, bool) or not isinstance(r.value, (int, float)) or not _finite(r.value):
            errors.append(FieldError((*here, "value"), "must be a finite number", "invalid_number"))
        elif r.value < 0:
            errors.append(FieldError((*here, "value"), "must not be negative", "negative"))
        if r.comparator is not None and r.comparator not in COMPARATORS:
            errors.append(FieldError((*here, "comparator"), f"must be one of {list(COMPARATORS)}", "invalid_choice"))
        if r.hemolysis is not None and r.hemolysis not in HEMOLYSIS:
            errors.append(FieldError((*here, "hemolysis"), f"must be one of {list(HEMOLYSIS)}", "invalid_choice"))
        specimen = r.specimen or loinc_specimen or panel.specimen or "serum"
        if r.specimen is not None and r.specimen not in SPECIMENS:
            errors.append(FieldError((*here, "specimen"), f"must be one of {list(SPECIMENS)}", "invalid_choice"))
        elif r.specimen and loinc_specimen and r.specimen != loinc_specimen:
            errors.append(FieldError((*here, "specimen"), f"LOINC {loinc} is measured in {loinc_specimen}, "
                                     f"not {r.specimen}", "conflict"))
        ucum, factor = None, None
        if analyte is not None:
            ucum, factor = self._resolve_unit(k, analyte, r.unit, (*here, "unit"), errors)
        sent_low = sent_high = None
        if r.reference_interval is not None and analyte is not None:
            sent_low, sent_high = self._sent_interval(k, analyte, r, (*here, "reference_interval"), errors)
        if len(errors) > count or analyte is None or factor is None or ucum is None:
            return None
        value = float(r.value) * factor
        warnings: list[dict[str, Any]] = []
        age = patient.age_days
        if r.reference_interval is None:
            interval, origin, reason = self._select_interval(k, analyte, specimen, patient, warnings)
        else:  # the range sent with the result replaces the interval only: the limits still depend on age
            interval, origin, reason = None, "result", None
            self._infant_age_in_years(k, patient, warnings)
            if age is None:
                warnings.append(self._warning(k, "adult_limits_assumed"))
        critical = self._select_critical(k, analyte, age)
        return Prepared(index, r.id, analyte, loinc, float(r.value), r.unit, ucum, factor, value,
                        r.comparator, specimen, r.hemolysis, interval, origin, reason,
                        r.reference_interval, sent_low, sent_high, critical, tuple(warnings))

    def _resolve_analyte(self, k: Knowledge, text: Any) -> tuple[str | None, str | None, str | None]:
        if not isinstance(text, str):
            return None, None, None
        name = text.strip()
        if name in self._names:
            return name, None, None  # LOINC chosen once the unit is known
        code = k.loinc.get(name)
        if code is None or k.analytes[code.analyte].derived:
            return None, None, None
        return code.analyte, code.code, code.specimen

    def _resolve_unit(self, k: Knowledge, analyte: str, text: Any, path: tuple[str | int, ...],
                      errors: list[FieldError]) -> tuple[str | None, float | None]:
        if not isinstance(text, str) or not text.strip():
            errors.append(FieldError(path, "a unit is required", "missing_unit"))
            return None, None
        ucum = k.resolve_unit(text)
        if ucum is None:
            accepted = ", ".join(k.accepted_units(analyte))
            kind = describe_dimension(text.strip())
            if kind is not None:
                reason = f"'{_clip(text)}' is {kind}, not a concentration; accepted units for {analyte}: {accepted}"
                errors.append(FieldError(path, reason, "wrong_dimension"))
            else:
                reason = f"unknown unit '{_clip(text)}'; accepted units for {analyte}: {accepted}"
                errors.append(FieldError(path, reason, "unknown_unit"))
            return None, None
        factor = k.factor(analyte, ucum)
        if factor is None:
            accepted = ", ".join(k.accepted_units(analyte))
            analyte_def = k.analytes[analyte]
            why = "no molar mass" if analyte_def.molar_mass is None else "no valence"
            errors.append(FieldError(path, f"'{ucum}' cannot be converted for {analyte} (the data gives it "
                                     f"{why}); accepted units: {accepted}", "incompatible_unit"))
            return None, None
        return ucum, factor

    def _sent_interval(self, k: Knowledge, analyte: str, r: ResultInput, path: tuple[str | int, ...],
                       errors: list[FieldError]) -> tuple[float | None, float | None]:
        sent = r.reference_interval
        assert sent is not None
        count = len(errors)
        for side in ("low", "high"):
            bound = getattr(sent, side)
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not _finite(bound) or bound < 0):
                errors.append(FieldError((*path, side), "must be a finite number, not negative", "invalid_number"))
        if sent.low is None and sent.high is None:
            errors.append(FieldError(path, "needs 'low', 'high' or both", "empty_interval"))
        elif (sent.low is not None and sent.high is not None and len(errors) == count
              and sent.low >= sent.high):
            errors.append(FieldError(path, "'low' must be below 'high'", "inverted_interval"))
        _, factor = self._resolve_unit(k, analyte, sent.unit if sent.unit is not None else r.unit,
                                       (*path, "unit"), errors)
        if len(errors) > count or factor is None:
            return None, None
        return (None if sent.low is None else sent.low * factor,
                None if sent.high is None else sent.high * factor)

    def _select_interval(self, k: Knowledge, analyte: str, specimen: str, patient: Patient,
                         warnings: list[dict[str, Any]]) -> tuple[Interval | None, str | None, str | None]:
        rules = k.intervals.get(analyte, ())
        if patient.age_days is None:
            chosen = next((r for r in rules if r.adult_default and specimen in r.specimens
                           and (r.sex == "any" or r.sex == patient.sex)), None)
            if chosen is not None:
                warnings.append(self._warning(k, "adult_interval_assumed"))
                return chosen, chosen.origin, None
            return None, None, f"the data has no adult interval for {analyte} in {specimen.replace('_', ' ')}"
        self._infant_age_in_years(k, patient, warnings)
        for rule in rules:
            if rule.applies(specimen, patient.sex, patient.age_days):
                if not rule.established:
                    return None, None, rule.reason
                return rule, rule.origin, None
        return None, None, (f"the data has no interval for {analyte} in {specimen.replace('_', ' ')} "
                            f"at age {format_age(patient.age_days)}")

    def _infant_age_in_years(self, k: Knowledge, patient: Patient, warnings: list[dict[str, Any]]) -> None:
        if patient.age_days is not None and patient.age_given_in_years and patient.age_days < 365.25:
            warnings.append(self._warning(k, "age_in_years_infant"))

    @staticmethod
    def _select_critical(k: Knowledge, analyte: str, age_days: float | None) -> Critical | None:
        age = ADULT_AGE_DAYS if age_days is None else age_days
        for rule in k.critical.get(analyte, ()):
            if rule.age_from <= age < rule.age_to:
                return rule
        return None

    # --------------------------------------------------------------- columns
    def columns(self, k: Knowledge, rows: list[Prepared]) -> Columns:
        n = len(rows)
        nan = math.nan
        value = np.fromiter((p.value for p in rows), np.float64, n)
        comparator = np.fromiter((COMPARATOR_CODES[p.comparator] for p in rows), np.int8, n)
        low, high, has = [], [], []
        c_low, c_low_inc, c_high, c_high_inc, i_low, i_high = [], [], [], [], [], []
        g_low, g_high = [], []
        for p in rows:
            if p.interval_origin == "result":
                bounds = (p.sent_low, p.sent_high)
            elif p.interval is not None:
                bounds = (p.interval.low, p.interval.high)
            else:
                bounds = None
            has.append(bounds is not None)
            low.append(nan if bounds is None or bounds[0] is None else bounds[0])
            high.append(nan if bounds is None or bounds[1] is None else bounds[1])
            crit = p.critical
            c_low.append(nan if crit is None or crit.low is None else crit.low)
            c_low_inc.append(True if crit is None else crit.low_inclusive)
            c_high.append(nan if crit is None or crit.high is None else crit.high)
            c_high_inc.append(True if crit is None else crit.high_inclusive)
            limits_analyte = "calcium" if p.analyte == "corrected_calcium" else p.analyte
            implausible = k.implausible.get(limits_analyte)
            i_low.append(nan if implausible is None or implausible.low is None else implausible.low)
            i_high.append(nan if implausible is None or implausible.high is None else implausible.high)
            term_low = k.ctcae.get((p.analyte, "low"))
            term_high = k.ctcae.get((p.analyte, "high"))
            g_low.append(term_low.edges if term_low else (nan, nan, nan))
            g_high.append(term_high.edges if term_high else (nan, nan, nan))
        return Columns(
            value=value, comparator=comparator, has_interval=np.array(has, dtype=bool),
            low=np.array(low), high=np.array(high), critical_low=np.array(c_low),
            critical_low_inclusive=np.array(c_low_inc, dtype=bool), critical_high=np.array(c_high),
            critical_high_inclusive=np.array(c_high_inc, dtype=bool), implausible_low=np.array(i_low),
            implausible_high=np.array(i_high), grade_low=np.array(g_low, dtype=np.float64).reshape(n, 3),
            grade_high=np.array(g_high, dtype=np.float64).reshape(n, 3),
        )

    # ------------------------------------------------------- corrected calcium
    @staticmethod
    def _corrected_calcium_inputs(prepared: list[Prepared]) -> tuple[Prepared, Prepared] | None:
        calcium = next((p for p in prepared if p.analyte == "calcium"), None)
        albumin = next((p for p in prepared if p.analyte == "albumin"), None)
        if calcium is None or albumin is None or calcium.comparator or albumin.comparator:
            return None
        return calcium, albumin

    def _corrected_row(self, k: Knowledge, calcium: Prepared, albumin: Prepared) -> Prepared:
        cc = k.corrected_calcium
        ca_factor = k.factors[("calcium", cc.calcium_unit)]
        alb_factor = k.factors[("albumin", cc.albumin_unit)]
        corrected = calcium.value / ca_factor + cc.slope * (cc.reference_albumin - albumin.value / alb_factor)
        value = corrected * ca_factor
        return Prepared(
            -1, None, "corrected_calcium", k.analytes["corrected_calcium"].loinc[0].code,
            corrected, cc.calcium_unit, cc.calcium_unit, ca_factor, value, None, calcium.specimen, None,
            calcium.interval, calcium.interval_origin, calcium.interval_reason, calcium.sent,
            calcium.sent_low, calcium.sent_high, calcium.critical,
            tuple(w for w in calcium.warnings if w["code"] in ("adult_interval_assumed", "adult_limits_assumed")),
        )

    # ---------------------------------------------------------------- output
    def _result_json(self, k: Knowledge, p: Prepared, v: Verdicts, i: int) -> dict[str, Any]:
        classification = CLASSIFICATIONS[v.classification[i]]
        flag = FLAGS[v.flag[i]]
        reason = REASONS[v.reason[i]]
        analyte = k.analytes[p.analyte]
        loinc = p.loinc or self._usual_loinc(k, p)
        warnings = [dict(w) for w in p.warnings]
        out: dict[str, Any] = {
            "id": p.id,
            "analyte": p.analyte,
            "loinc": loinc,
            "input": {"value": p.input_value, "unit": p.input_unit},
            "value": {"value": p.value, "unit": analyte.canonical_unit},
            "specimen": p.specimen,
            "reference_interval": self._interval_out(k, p),
            "critical_limits": self._critical_out(k, p.critical),
            "classification": classification,
            "classification_reason": reason,
            "flag": flag,
            "flag_display": FLAG_DISPLAY.get(flag or ""),
            "critical": bool(v.critical[i]),
            "ctcae": self._ctcae_out(k, p, int(v.grade[i]), classification),
            "symptoms": [],
            "notes": [],
            "warnings": warnings,
        }
        if p.comparator:
            out["input"]["comparator"] = p.comparator
            out["value"]["comparator"] = p.comparator
        if classification in ("hypo", "hyper"):
            condition = analyte.condition_low if classification == "hypo" else analyte.condition_high
            out["condition"] = condition
            out["symptoms"] = [{"text": s.text, "system": s.system, "source": k.source_title(s.source)}
                               for s in k.symptoms.get(condition, ())]
            out["notes"] = [{"text": s.text, "source": k.source_title(s.source)}
                            for s in k.symptom_notes.get(condition, ())]
            if condition in k.coverage:
                out["notes"].append({"text": k.coverage[condition], "source": None})
        if reason == "implausible":
            limits = k.implausible["calcium" if p.analyte == "corrected_calcium" else p.analyte]
            self._warn(k, out, "implausible", limit=f"{_fmt(limits.stated_low)}-{_fmt(limits.stated_high)} "
                       f"{limits.unit}")
        elif reason == "no_interval":
            self._warn(k, out, "no_interval", reason=p.interval_reason or "none in the data")
        elif reason == "off_scale":
            self._warn(k, out, "off_scale", comparator=p.comparator, value=_fmt(p.input_value), unit=p.input_unit)
        if p.interval_origin == "result":
            self._warn(k, out, "interval_from_request")
        crit = p.critical
        if crit is not None and reason != "implausible":
            if crit.low is None and classification == "hypo":
                self._warn(k, out, "no_critical_limit", side="low", reason=crit.low_missing_reason)
            if crit.high is None and classification == "hyper":
                self._warn(k, out, "no_critical_limit", side="high", reason=crit.high_missing_reason)
        if p.analyte == "potassium":
            if p.hemolysis in ("slight", "moderate", "gross"):
                self._warn(k, out, "hemolysis", hemolysis=p.hemolysis)
            if classification == "hyper" and p.specimen == "serum":
                self._warn(k, out, "serum_potassium_high")
        out["basis"] = self._basis(k, p, out)
        return out

    @staticmethod
    def _usual_loinc(k: Knowledge, p: Prepared) -> str:
        codes = k.analytes[p.analyte].loinc
        kind = k.units[p.ucum].kind
        prop = "mass" if kind == "mass" else "molar"
        for code in codes:
            if code.specimen == p.specimen and code.property == prop:
                return code.code
        for code in codes:
            if code.specimen is None and code.property == prop:
                return code.code
        return next((c.code for c in codes if c.specimen is None), codes[0].code)

    def _interval_out(self, k: Knowledge, p: Prepared) -> dict[str, Any] | None:
        if p.interval_origin == "result":
            sent = p.sent
            assert sent is not None
            return {"low": p.sent_low, "high": p.sent_high, "unit": k.analytes[p.analyte].canonical_unit,
                    "applies_to": "as sent with the result", "origin": "result",
                    "source": sent.text or "the laboratory's interval sent with the result",
                    "stated": {"low": sent.low, "high": sent.high, "unit": sent.unit or p.input_unit}}
        rule = p.interval
        if rule is None:
            return None
        cached = self._interval_json.get(id(rule))
        if cached is None:
            applies = rule.describe()
            if k.lab and rule.origin == "laboratory":
                applies += f" (laboratory {k.lab})"
            cached = {"low": rule.low, "high": rule.high, "unit": k.analytes[rule.analyte].canonical_unit,
                      "applies_to": applies, "origin": rule.origin, "source": k.source_title(rule.source),
                      "stated": {"low": rule.stated_low, "high": rule.stated_high, "unit": rule.unit}}
            self._interval_json[id(rule)] = cached
        return dict(cached)

    def _critical_out(self, k: Knowledge, rule: Critical | None) -> dict[str, Any] | None:
        if rule is None:
            return None
        cached = self._critical_json.get(id(rule))
        if cached is None:
            cached = {
                "low": rule.low, "high": rule.high, "unit": k.analytes[rule.analyte].canonical_unit,
                "low_comparison": None if rule.low is None else ("<=" if rule.low_inclusive else "<"),
                "high_comparison": None if rule.high is None else (">=" if rule.high_inclusive else ">"),
                "origin": rule.origin, "source": k.source_title(rule.source),
                "stated": {"low": rule.stated_low, "high": rule.stated_high, "unit": rule.unit},
            }
            self._critical_json[id(rule)] = cached
        return dict(cached)

    def _ctcae_out(self, k: Knowledge, p: Prepared, grade: int, classification: str) -> dict[str, Any] | None:
        if grade == 0:
            return None
        direction = "low" if classification == "hypo" else "high"
        term: CtcaeTerm = k.ctcae[(p.analyte, direction)]
        out = {"grade": grade, "term": term.term, "version": CTCAE_VERSION, "laboratory_only": True,
               "basis": "laboratory value only: CTCAE grades 2-4 also carry clinical criteria "
                        "(symptoms, hospitalisation, life-threatening consequences) that a value cannot show",
               "edges": {"unit": term.unit, "grade_2": term.stated_edges[0], "grade_3": term.stated_edges[1],
                         "grade_4": term.stated_edges[2],
                         "canonical": [term.edges[0], term.edges[1], term.edges[2]]},
               "source": k.source_title(term.source)}
        if term.note:
            out["note"] = term.note
        return out

    def _basis(self, k: Knowledge, p: Prepared, out: dict[str, Any]) -> dict[str, Any]:
        canonical = k.analytes[p.analyte].canonical_unit
        analyte = k.analytes[p.analyte]
        conversion = {"from": p.ucum, "to": canonical, "factor": p.factor,
                      "derived_with": "pint, once at start-up"}
        unit_kind = k.units[p.ucum].kind
        if unit_kind == "mass" and canonical != "g/L" and analyte.molar_mass:
            conversion["molar_mass_g_per_mol"] = analyte.molar_mass
        if unit_kind == "equivalent":
            conversion["valence"] = analyte.valence
        limits = k.implausible.get("calcium" if p.analyte == "corrected_calcium" else p.analyte)
        return {
            "rule": _rule_text(out, canonical),
            "conversion": conversion,
            "implausible_limits": None if limits is None else {
                "low": limits.low, "high": limits.high, "unit": canonical,
                "policy": "local", "reasoning": limits.reasoning, "source": k.source_title(limits.source)},
        }

    def _warning(self, k: Knowledge, code: str, **fields: Any) -> dict[str, Any]:
        message = k.messages.get(code, {"text": code})
        warning = {"code": code, "text": message["text"].format(**fields) if fields else message["text"]}
        if "source" in message:
            warning["source"] = k.source_title(message["source"])
        return warning

    def _warn(self, k: Knowledge, result: dict[str, Any], code: str, **fields: Any) -> None:
        result["warnings"].append(self._warning(k, code, **fields))

    def _panel_warnings(self, k: Knowledge, prepared: list[Prepared], results: list[dict[str, Any]],
                        derived: list[dict[str, Any]]) -> None:
        albumin_low = any(r["analyte"] == "albumin" and r["classification"] == "hypo" for r in results)
        for result in results:
            if result["analyte"] != "calcium":
                continue
            if albumin_low:
                self._warn(k, result, "low_albumin")
            if result["classification"] in ("hypo", "hyper"):
                self._warn(k, result, "ctcae_graded_on_corrected" if derived else "ctcae_needs_albumin")

    def _patterns(self, k: Knowledge, results: list[dict[str, Any]],
                  derived: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_analyte: dict[str, tuple[int | None, dict[str, Any]]] = {}
        for i, r in enumerate(results):
            if r["classification"] != "indeterminate":
                by_analyte.setdefault(r["analyte"], (i, r))
        for r in derived:
            if r["classification"] != "indeterminate":
                by_analyte.setdefault(r["analyte"], (None, r))
        found = []
        for pattern in k.patterns:
            involved = []
            for req in pattern.requires:
                chosen = next((by_analyte[a] for a in req.any_of if a in by_analyte), None)
                if chosen is None or chosen[1]["classification"] != req.classification:
                    break
                involved.append({"index": chosen[0], "id": chosen[1]["id"], "analyte": chosen[1]["analyte"],
                                 "flag": chosen[1]["flag"]})
            else:
                found.append({"id": pattern.id, "title": pattern.title, "text": pattern.text,
                              "source": k.source_title(pattern.source), "results": involved})
        return found


def _rule_text(out: dict[str, Any], unit: str) -> str:
    value = out["value"]["value"]
    shown = f"{out['value'].get('comparator', '')}{value:.4g} {unit}"
    reason = out["classification_reason"]
    if reason == "implausible":
        return f"{shown} lies beyond the implausible limits: not classified"
    if reason == "off_scale":
        return f"{shown} is off scale and its whole range is not beyond a critical limit: not classified"
    crit = out["critical_limits"] or {}
    if out["flag"] == "LL":
        return f"{shown} is {crit['low_comparison']} the critical low {crit['low']:.4g} {unit}: LL"
    if out["flag"] == "HH":
        return f"{shown} is {crit['high_comparison']} the critical high {crit['high']:.4g} {unit}: HH"
    if reason == "no_interval":
        return f"{shown}: no reference interval applies"
    ri = out["reference_interval"]
    bounds = f"[{_fmt4(ri['low'])}, {_fmt4(ri['high'])}] {unit} (inclusive)"
    if out["flag"] == "L":
        return f"{shown} is below the interval {bounds}: L"
    if out["flag"] == "H":
        return f"{shown} is above the interval {bounds}: H"
    return f"{shown} is within the interval {bounds}: N"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _fmt4(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _clip(text: Any, limit: int = 40) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."
