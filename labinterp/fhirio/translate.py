"""FHIR R4 Observations -> engine panels -> engine answers (shared by the FHIR and CDS Hooks doors).

No rule lives here: Observations are read into `ResultInput`s, grouped into panels (same
subject, same collection time), handed to `Engine.interpret`, and each answer is paired back
with the Observation it came from. What the engine refuses (unknown unit, negative value,
conflicting specimen...) is reported per Observation with the engine's own reason.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from labinterp.core import Engine, InvalidInput, Panel, Patient, ResultInput, SentInterval
from labinterp.core.engine import resolve_code
from labinterp.core.knowledge import Knowledge
from labinterp.core.outcomes import Outcome, PanelOutcome
from labinterp.core.verification import index_problem
from labinterp.fhirio.codes import (
    HEMOLYSED_CONDITION,
    LOINC,
    NOT_INTERPRETED_STATUSES,
    SPECIMEN_CONDITION_SYSTEM,
    UCUM,
)
from labinterp.render import v1 as render

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


@dataclass
class Issue:
    """Why an Observation was not interpreted (or something to know about it)."""

    severity: str  # error | warning | information
    code: str  # http://hl7.org/fhir/issue-type
    text: str
    expression: str  # FHIRPath, relative to the resource


@dataclass
class Item:
    """One Observation of the request and what became of it."""

    position: int  # index among the request's entries (0 for a single Observation)
    resource: dict[str, Any]
    full_url: str | None
    path: str  # FHIRPath of the resource in the request: "Observation" or "Bundle.entry[3].resource"
    issues: list[Issue] = field(default_factory=list)
    result: ResultInput | None = None
    unit_text: str | None = None  # the Observation's own unit, as it spelt it
    sent_range_used: bool = False
    patient: Patient | None = None
    group: tuple[Any, ...] | None = None
    answer: dict[str, Any] | None = None  # the engine's result for this Observation, rendered as in v1
    outcome: Outcome | None = None  # ... and as the engine decided it
    skipped: bool = False


@dataclass
class Group:
    """Observations interpreted together as one panel (same subject, same collection time)."""

    key: tuple[Any, ...]
    items: list[Item]
    patient: Patient
    answer: dict[str, Any] | None = None  # the whole engine answer (derived, patterns...), rendered as in v1
    outcome: PanelOutcome | None = None
    issues: list[Issue] = field(default_factory=list)


@dataclass
class Translation:
    items: list[Item]
    groups: list[Group]
    ignored: dict[str, int]  # resourceType -> count of entries that are neither Observation nor context


# ---------------------------------------------------------------------------- reading
def loinc_codes(resource: dict[str, Any]) -> list[str]:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    out = []
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and coding.get("system") == LOINC and isinstance(coding.get("code"), str):
            out.append(coding["code"])
    return out


def codings(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    """Observation.code.coding as (system, code), LOINC codings first (a sender may add its local code)."""
    code = resource.get("code")
    found = code.get("coding") if isinstance(code, dict) else None
    out = [(c.get("system") if isinstance(c.get("system"), str) else None, c["code"])
           for c in (found if isinstance(found, list) else [])
           if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"].strip()]
    return sorted(out, key=lambda sc: sc[0] != LOINC)


def interpretable(k: Knowledge, resource: dict[str, Any]) -> bool:
    """Whether an Observation carries a LOINC code this service reads (profiles' local codes aside)."""
    return any(system == LOINC and resolve_code(k, code, system)[0] is not None
               for system, code in codings(resource))


def parse_date(text: Any) -> tuple[dt.date | None, str]:
    """(date, precision) with precision 'day', 'month', 'year' or 'none'."""
    if not isinstance(text, str):
        return None, "none"
    m = _DATE.match(text)
    if not m:
        return None, "none"
    year, month, day = m.group(1), m.group(2), m.group(3)
    try:
        if day:
            return dt.date(int(year), int(month), int(day)), "day"
        if month:
            return dt.date(int(year), int(month), 1), "month"
        return dt.date(int(year), 1, 1), "year"
    except ValueError:
        return None, "none"


def effective_text(resource: dict[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return str(period["start"])
    return None


def _specimen_word(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    low = text.lower()
    if "plasma" in low and "serum" not in low:
        return "plasma"
    if "serum" in low and "plasma" not in low:
        return "serum"
    if "blood" in low and "serum" not in low and "plasma" not in low:
        return "whole_blood"
    return None


def _specimen(resource: dict[str, Any], specimens: dict[str, dict[str, Any]]) -> str | None:
    ref = resource.get("specimen")
    if not isinstance(ref, dict):
        return None
    found = _specimen_word(ref.get("display"))
    if found:
        return found
    target = specimens.get(str(ref.get("reference")))
    if target is not None:
        kind = target.get("type")
        if isinstance(kind, dict):
            found = _specimen_word(kind.get("text"))
            for coding in kind.get("coding") or []:
                found = found or (_specimen_word(coding.get("display")) if isinstance(coding, dict) else None)
    return found


def _hemolysis(resource: dict[str, Any], specimens: dict[str, dict[str, Any]]) -> str | None:
    """'degree_not_stated' when the Observation's Specimen is haemolysed: Specimen.condition coded v2-0493
    HEM, or a condition text naming haemolysis. FHIR states no degree, so none is guessed."""
    ref = resource.get("specimen")
    target = specimens.get(str(ref.get("reference"))) if isinstance(ref, dict) else None
    conditions = target.get("condition") if isinstance(target, dict) else None
    for concept in conditions if isinstance(conditions, list) else []:
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding") or []:
            if (isinstance(coding, dict) and coding.get("system") == SPECIMEN_CONDITION_SYSTEM
                    and coding.get("code") == HEMOLYSED_CONDITION):
                return "degree_not_stated"
        text = concept.get("text")
        if isinstance(text, str) and re.search(r"ha?emoly[sz]", text, re.IGNORECASE):
            return "degree_not_stated"
    return None


def _quantity_unit(q: dict[str, Any]) -> str | None:
    if q.get("system") == UCUM and isinstance(q.get("code"), str) and q["code"].strip():
        return str(q["code"])
    if isinstance(q.get("unit"), str) and q["unit"].strip():
        return str(q["unit"])
    if isinstance(q.get("code"), str) and q["code"].strip() and q.get("system") is None:
        return str(q["code"])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _age_days(birth: dt.date, when: dt.date) -> float:
    return float((when - birth).days)


class Reader:
    """Reads a validated FHIR body (an Observation or a Bundle) into items and groups."""

    def __init__(self, knowledge: Knowledge):
        self.k = knowledge

    def read(self, body: dict[str, Any]) -> Translation:
        ignored: dict[str, int] = {}
        entries: list[tuple[int, dict[str, Any], str | None, str]] = []
        if body.get("resourceType") == "Observation":
            entries.append((0, body, None, "Observation"))
        else:
            for i, entry in enumerate(body.get("entry") or []):
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict):
                    entries.append((i, resource, entry.get("fullUrl"), f"Bundle.entry[{i}].resource"))
        patients: dict[str, dict[str, Any]] = {}
        specimens: dict[str, dict[str, Any]] = {}
        for _, resource, full_url, _ in entries:
            kind = resource.get("resourceType")
            if kind in ("Patient", "Specimen"):
                target = patients if kind == "Patient" else specimens
                if resource.get("id"):
                    target[f"{kind}/{resource['id']}"] = resource
                if full_url:
                    target[str(full_url)] = resource
                    # a full URL ".../Patient/1" also answers the relative reference "Patient/1"
                    tail = "/".join(str(full_url).rstrip("/").split("/")[-2:])
                    target.setdefault(tail, resource)
            elif kind != "Observation":
                ignored[str(kind)] = ignored.get(str(kind), 0) + 1
        items = [self._item(pos, res, url, path, patients, specimens)
                 for pos, res, url, path in entries if res.get("resourceType") == "Observation"]
        groups: dict[tuple[Any, ...], Group] = {}
        for item in items:
            if item.skipped or item.group is None:
                continue
            group = groups.get(item.group)
            if group is None:
                group = groups[item.group] = Group(item.group, [], item.patient or Patient())
            group.items.append(item)
        return Translation(items, list(groups.values()), ignored)

    # -------------------------------------------------------------- one Observation
    def _item(self, position: int, resource: dict[str, Any], full_url: str | None, path: str,
              patients: dict[str, dict[str, Any]], specimens: dict[str, dict[str, Any]]) -> Item:
        item = Item(position, resource, str(full_url) if full_url else None, path)
        status = resource.get("status")
        if status in NOT_INTERPRETED_STATUSES:
            return self._skip(item, "information", "business-rule",
                              f"Not interpreted: the Observation's status is '{status}'.", "status")
        codes = loinc_codes(resource)
        # a coding without a system is not read: FHIR gives a code its meaning only with its system
        analyte_coding = next(((system, code) for system, code in codings(resource)
                               if system is not None and resolve_code(self.k, code, system)[0] is not None), None)
        if analyte_coding is None:
            derived = next((c for c in codes if c in self.k.loinc), None)
            if derived is not None:
                return self._skip(item, "information", "not-supported",
                                  f"Not interpreted: LOINC {derived} is derived by this service itself "
                                  "(from total calcium and albumin), not read from the request.", "code")
            known = sorted(c for c, v in self.k.loinc.items() if not self.k.analytes[v.analyte].derived)
            shown = ", ".join(f"{system or 'no system'}|{code}" for system, code in codings(resource)) or "none"
            mapped = (f"; none is mapped by laboratory profile '{self.k.lab}' (codes.toml)" if self.k.lab
                      else "; name a laboratory profile (?lab=) to map local codes")
            return self._skip(item, "information", "not-supported",
                              f"Not interpreted: no code this service interprets (the Observation's codings: "
                              f"{shown}; LOINC codes interpreted: {', '.join(known)}{mapped}).", "code")
        code_system, analyte_code = analyte_coding
        quantity = resource.get("valueQuantity")
        if not isinstance(quantity, dict):
            other = next((key for key in resource if key.startswith("value")), None)
            reason = (f"its value is a {other[5:]}, not a Quantity" if other
                      else "it has no value" + (f" (dataAbsentReason: {_text(resource['dataAbsentReason'])})"
                                                if "dataAbsentReason" in resource else ""))
            return self._skip(item, "warning", "required", f"Not interpreted: {reason}.", "value")
        value = _number(quantity.get("value"))
        if value is None:
            return self._skip(item, "warning", "required",
                              "Not interpreted: valueQuantity has no finite numeric value.", "valueQuantity.value")
        unit = _quantity_unit(quantity)
        read = resolve_code(self.k, analyte_code, code_system)[1]
        if unit is None and read is not None and read.unit:
            unit = ""  # the engine assumes the unit the profile's codes.toml gives this code, and says so
        if unit is None:
            return self._skip(item, "warning", "required",
                              "Not interpreted: valueQuantity has no unit (neither a UCUM code nor a unit text).",
                              "valueQuantity.unit")
        item.unit_text = str(quantity.get("unit") or unit)
        comparator = quantity.get("comparator")
        sent, range_issue = self._sent_range(resource, item)
        if range_issue is not None:
            item.issues.append(range_issue)
        patient, subject, patient_issue = self._patient(resource, patients)
        if patient_issue is not None:
            if patient_issue.severity == "error":
                return self._skip(item, patient_issue.severity, patient_issue.code, patient_issue.text,
                                  patient_issue.expression)
            item.issues.append(patient_issue)
        item.patient = patient
        item.sent_range_used = sent is not None
        item.result = ResultInput(
            analyte=analyte_code, value=value, unit=unit, id=item.full_url or resource.get("id"),
            comparator=comparator if isinstance(comparator, str) else None,
            specimen=_specimen(resource, specimens), hemolysis=_hemolysis(resource, specimens),
            reference_interval=sent, code_system=code_system)
        item.group = (subject, effective_text(resource), patient)
        return item

    @staticmethod
    def _skip(item: Item, severity: str, code: str, text: str, expression: str) -> Item:
        item.skipped = True
        item.issues.append(Issue(severity, code, text, expression))
        return item

    def _sent_range(self, resource: dict[str, Any], item: Item) -> tuple[SentInterval | None, Issue | None]:
        ranges = resource.get("referenceRange")
        if not isinstance(ranges, list) or not ranges:
            return None, None
        for i, rr in enumerate(ranges):
            if not isinstance(rr, dict):
                continue
            kind = rr.get("type")
            codes = [c.get("code") for c in (kind.get("coding") or []) if isinstance(c, dict)] \
                if isinstance(kind, dict) else []
            if kind is not None and "normal" not in codes:
                continue
            if rr.get("appliesTo") or rr.get("age"):
                continue  # qualified ranges: the service's own age/sex-aware interval is used instead
            low, high = rr.get("low"), rr.get("high")
            if not isinstance(low, dict) and not isinstance(high, dict):
                continue
            bounds = [b for b in (low, high) if isinstance(b, dict)]
            units = {_quantity_unit(b) for b in bounds}
            units.discard(None)
            if len(units) > 1:
                return None, Issue("warning", "value", f"referenceRange[{i}] gives its low and high in different "
                                   "units: not used; the service's interval applies.", f"referenceRange[{i}]")
            values = [None if not isinstance(b, dict) else _number(b.get("value")) for b in (low, high)]
            if any(isinstance(b, dict) and v is None for b, v in zip((low, high), values, strict=True)):
                return None, Issue("warning", "value", f"referenceRange[{i}] has a bound with no numeric value: "
                                   "not used; the service's interval applies.", f"referenceRange[{i}]")
            text = rr.get("text") if isinstance(rr.get("text"), str) else None
            label = "the laboratory's referenceRange sent with the Observation" + (f" ({text})" if text else "")
            return SentInterval(values[0], values[1], next(iter(units)) if units else None, label[:200]), None
        return None, Issue("information", "informational", "The Observation's referenceRange has no usable "
                           "unqualified normal range with a numeric low or high: the service's interval applies.",
                           "referenceRange")

    def _patient(self, resource: dict[str, Any], patients: dict[str, dict[str, Any]]
                 ) -> tuple[Patient, str | None, Issue | None]:
        ref = _subject_reference(resource)
        found = patients.get(ref) if ref else None
        if found is None:
            return Patient(), ref, None
        gender = found.get("gender")
        sex = gender if gender in ("female", "male", "other", "unknown") else None
        birth, birth_precision = parse_date(found.get("birthDate"))
        when, when_precision = parse_date(effective_text(resource))
        if birth is None:
            return Patient(sex=sex), ref, None
        if when is None:
            return Patient(sex=sex), ref, Issue(
                "warning", "incomplete", "No effective date on the Observation: age at collection unknown, "
                "so the adult interval is assumed.", "effective")
        if birth_precision != "day" or when_precision != "day":
            return Patient(sex=sex), ref, Issue(
                "warning", "incomplete", "The Patient's birthDate or the Observation's effective date is not "
                "given to the day: age at collection not computed, so the adult interval is assumed.", "effective")
        age = _age_days(birth, when)
        if age < 0:
            return Patient(sex=sex), ref, Issue(
                "error", "invariant", "Not interpreted: the Observation's effective date is before the "
                "Patient's birthDate.", "effective")
        return Patient(age_days=age, sex=sex), ref, None


def _text(concept: Any) -> str:
    if isinstance(concept, dict):
        if isinstance(concept.get("text"), str):
            return str(concept["text"])
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
                return str(coding.get("display") or coding.get("code"))
    return "given"


# ---------------------------------------------------------------------------- interpreting
def interpret(engine: Engine, translation: Translation, lab: str | None = None) -> Translation:
    """Run each group through the engine (with the laboratory profile `lab`); Observations the engine
    refuses get its reason."""
    for group in translation.groups:
        live = [item for item in group.items if not item.skipped]
        while live:
            panel = Panel(results=tuple(item.result for item in live if item.result is not None),
                          patient=group.patient, lab=lab)
            try:
                outcome = engine.interpret(panel)
            except InvalidInput as error:
                refused = _refused(error, live)
                if not refused:  # a panel-level problem: nothing in this group can be interpreted
                    for item in live:
                        item.skipped = True
                        item.issues.append(Issue("warning", "invalid", "Not interpreted: " + "; ".join(
                            e.reason for e in error.errors), "subject"))
                    live = []
                    break
                live = [item for item in live if not item.skipped]
                continue
            group.outcome, group.answer = outcome, render.answer(outcome)
            for item, result, one in zip(live, group.answer["results"], outcome.results, strict=True):
                item.answer, item.outcome = result, one
            break
    return translation


_FIELD_EXPRESSIONS = {"unit": "valueQuantity.unit", "value": "valueQuantity.value",
                      "comparator": "valueQuantity.comparator", "specimen": "specimen",
                      "analyte": "code", "reference_interval": "referenceRange"}


def _refused(error: InvalidInput, live: list[Item]) -> bool:
    found = False
    for e in error.errors:
        if len(e.path) >= 2 and e.path[0] == "results" and isinstance(e.path[1], int) and e.path[1] < len(live):
            item = live[e.path[1]]
            field_name = str(e.path[2]) if len(e.path) > 2 else ""
            expression = _FIELD_EXPRESSIONS.get(field_name, "value")
            code = "code-invalid" if e.code in ("unknown_unit", "wrong_dimension", "incompatible_unit") else (
                "conflict" if e.code == "conflict" else "value")
            if not item.skipped:
                item.skipped = True
            item.issues.append(Issue("warning", code, f"Not interpreted: {e.reason}.", expression))
            found = True
    return found


def hemolysis_indices(translation: Translation, index_codes: frozenset[tuple[str, str]],
                      index_unit: str) -> dict[int, list[float]]:
    """The haemolysis indices sent as Observations coded with one of the laboratory's index codes
    (rule.hemolysis.index_codes), per interpreted Observation (its position) they apply to: those of the same
    Specimen (by reference), and those without a specimen of the same subject and collection time. Each index
    Observation's issue says it was read, or why not. A valueQuantity's unit, when given, must be index_unit."""
    by_specimen: dict[str, list[float]] = {}
    by_time: dict[tuple[str | None, str | None], list[float]] = {}
    for item in translation.items:
        resource = item.resource
        if not item.skipped or not any(system is not None and (system, code.strip()) in index_codes
                                       for system, code in codings(resource)):
            continue
        quantity = resource.get("valueQuantity")
        value = _number(quantity.get("value")) if isinstance(quantity, dict) else None
        unit = _quantity_unit(quantity) if isinstance(quantity, dict) else None
        found = index_problem(value, isinstance(quantity, dict) and bool(quantity.get("comparator")), unit,
                              index_unit)
        if resource.get("status") in NOT_INTERPRETED_STATUSES:
            problem = f"its status is '{resource.get('status')}'"
        elif found == "value":
            problem = "valueQuantity is not a number from 0 up"
        elif found == "unit":
            problem = f"its unit '{(unit or '')[:20]}' is not the index's unit ({index_unit})"
        else:
            problem = None
        if problem is not None or value is None:
            item.issues = [Issue("information", "informational", "Not interpreted: the laboratory's haemolysis "
                                 f"index code (rule.hemolysis.index_codes), not read as the index: {problem}.",
                                 "value")]
            continue
        item.issues = [Issue("information", "informational", f"Not interpreted: the laboratory's haemolysis index "
                             f"({value:g} {index_unit}), read by verification for the results of its specimen.",
                             "code")]
        specimen = _specimen_reference(resource)
        if specimen is not None:
            by_specimen.setdefault(specimen, []).append(value)
        else:
            by_time.setdefault((_subject_reference(resource), effective_text(resource)), []).append(value)
    out: dict[int, list[float]] = {}
    if not by_specimen and not by_time:
        return out
    for item in translation.items:
        if item.outcome is None or item.group is None:
            continue
        specimen = _specimen_reference(item.resource)
        found = [*(by_specimen.get(specimen, []) if specimen is not None else []),
                 *by_time.get((item.group[0], item.group[1]), [])]
        if found:
            out[item.position] = found
    return out


def _specimen_reference(resource: dict[str, Any]) -> str | None:
    ref = resource.get("specimen")
    target = ref.get("reference") if isinstance(ref, dict) else None
    return target if isinstance(target, str) and target else None


def _subject_reference(resource: dict[str, Any]) -> str | None:
    """Observation.subject's reference, as the groups key it (None: none given)."""
    subject = resource.get("subject")
    return str(subject.get("reference")) if isinstance(subject, dict) and subject.get("reference") else None
