"""Engine answers -> FHIR R4: each Observation as sent plus interpretation, range and notes.

Every text written here comes from the engine's answer (symptoms, sources, warnings, grade
terms, formula); this module only arranges them into FHIR elements.
"""

from __future__ import annotations

import copy
import math
import uuid
from typing import Any

from labinterp.core.knowledge import Interval, Knowledge
from labinterp.core.outcomes import Outcome
from labinterp.fhirio import codes
from labinterp.fhirio.translate import Issue, Item, Translation
from labinterp.render import v1 as render
from labinterp.render.numbers import rounded as _fmt
from labinterp.render.numbers import sig

AUTHOR = "labinterp"


def quantity(value: float, ucum: str, unit_text: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit_text or ucum, "system": codes.UCUM, "code": ucum}


def operation_outcome(issues: list[Issue], prefix: str = "") -> dict[str, Any]:
    out = []
    for issue in issues:
        entry: dict[str, Any] = {"severity": issue.severity, "code": issue.code, "diagnostics": issue.text}
        if issue.expression:
            entry["expression"] = [f"{prefix}.{issue.expression}" if prefix else issue.expression]
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}


class Writer:
    def __init__(self, knowledge: Knowledge):
        self.k = knowledge

    # ------------------------------------------------------------------ bundle
    def bundle(self, translation: Translation) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        urls: dict[int, str] = {}
        for item in translation.items:
            urls[id(item)] = item.full_url or f"urn:uuid:{uuid.uuid4()}"
        derived_after: dict[int, list[dict[str, Any]]] = {}
        patterns_for: dict[int, list[dict[str, Any]]] = {}
        for group in translation.groups:
            if group.answer is None:
                continue
            live = [i for i in group.items if i.answer is not None]
            derived_patterns = []
            for pattern in group.answer["patterns"]:
                for ref in pattern["results"]:
                    if ref["index"] is None:
                        derived_patterns.append(pattern)
                    else:
                        patterns_for.setdefault(id(live[ref["index"]]), []).append(pattern)
            assert group.outcome is not None
            for derived, outcome in zip(group.answer["derived"], group.outcome.derived, strict=True):
                sources = [live[ref["index"]] for ref in derived["derived_from"]]
                resource = self.derived_observation(derived, outcome.outcome, sources, urls)
                self.annotate_patterns(resource, derived_patterns)
                derived_after.setdefault(id(live[-1]), []).append(resource)
        for item in translation.items:
            resource = self.observation(item, urls)
            self.annotate_patterns(resource, patterns_for.get(id(item), []))
            entries.append({"fullUrl": urls[id(item)], "resource": resource})
            if item.issues:
                entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                                "resource": operation_outcome(item.issues, item.path)})
            for resource in derived_after.get(id(item), []):
                entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource})
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": self.summary(translation)})
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "entry": entries}

    def summary(self, translation: Translation) -> dict[str, Any]:
        k = self.k
        issues = [
            Issue("information", "informational", f"labinterp reference data version {k.data_version}"
                  + (f", laboratory profile {k.lab}" if k.lab else "") + ".", ""),
            Issue("information", "informational", k.disclaimer, ""),
            Issue("information", "informational", k.symptoms_note, ""),
        ]
        for kind, count in sorted(translation.ignored.items()):
            issues.append(Issue("information", "informational", f"{count} {kind} entr{'y' if count == 1 else 'ies'} "
                                "of the request are not Observations and are not returned.", ""))
        return operation_outcome(issues)

    # ------------------------------------------------------------ observations
    def observation(self, item: Item, urls: dict[int, str]) -> dict[str, Any]:
        resource = copy.deepcopy(item.resource)
        result = item.answer
        if result is None:
            return resource  # returned untouched; the OperationOutcome after it says why
        assert item.outcome is not None
        self._annotate(resource, result, item.outcome, item.unit_text, keep_range=item.sent_range_used or
                       bool(resource.get("referenceRange")))
        return resource

    def annotate_patterns(self, resource: dict[str, Any], patterns: list[dict[str, Any]]) -> None:
        for pattern in patterns:
            resource.setdefault("note", []).append(_note(
                f"**{pattern['title']}**: {pattern['text']} (source: {pattern['source']})"))

    def _annotate(self, resource: dict[str, Any], result: dict[str, Any], outcome: Outcome, unit_text: str | None,
                  keep_range: bool, derived: bool = False) -> None:
        flag = result["flag"]
        if flag in codes.INTERPRETATION:
            resource.setdefault("interpretation", []).append(codes.interpretation_concept(flag))
        ri = result["reference_interval"]
        if ri is not None and not keep_range:
            resource["referenceRange"] = [self.reference_range(result, outcome, unit_text, derived)]
        resource.setdefault("note", []).extend(_note(text) for text in notes(result))

    def reference_range(self, result: dict[str, Any], outcome: Outcome, unit_text: str | None,
                        derived: bool = False) -> dict[str, Any]:
        """The interval the result was classified against, in the unit the Observation is written in:
        as the source states it when that is the same unit, else converted with the engine's factor."""
        ri = result["reference_interval"]
        if derived:  # a derived Observation is written in the canonical unit
            ucum, factor = self.k.analytes[outcome.analyte].canonical_unit, 1.0
        else:
            ucum, factor = outcome.ucum, outcome.factor
        rule = outcome.interval
        if outcome.sent is not None:
            stated_ucum, stated = outcome.sent.ucum, (outcome.sent.stated.low, outcome.sent.stated.high)
        else:
            assert rule is not None
            stated_ucum, stated = self.k.resolve_unit(rule.unit), (rule.stated_low, rule.stated_high)
        if stated_ucum == ucum:
            low, high = stated
        else:
            converted = render.bounds_in_unit(outcome, factor)
            assert converted is not None
            low, high = (None if x is None else sig(x) for x in converted)
        out: dict[str, Any] = {}
        if low is not None:
            out["low"] = quantity(low, ucum, unit_text)
        if high is not None:
            out["high"] = quantity(high, ucum, unit_text)
        out["type"] = codes.range_type("normal")
        if rule is not None and outcome.sent is None:
            age = _age_range(rule)
            if age is not None:
                out["age"] = age
            if rule.sex != "any":
                out["appliesTo"] = [{"text": rule.sex}]
        origin = {"default": "labinterp default interval", "laboratory": "laboratory profile interval",
                  "result": "the laboratory's interval"}.get(ri["origin"], ri["origin"])
        if derived:
            origin = "total calcium interval applied to corrected calcium: " + origin
        out["text"] = f"{origin}, {ri['applies_to']}; source: {ri['source']}"
        return out

    def derived_observation(self, derived: dict[str, Any], outcome: Outcome, sources: list[Item],
                            urls: dict[int, str]) -> dict[str, Any]:
        calcium = sources[0].resource
        analyte = self.k.analytes[derived["analyte"]]
        loinc = next(c for c in analyte.loinc if c.code == derived["loinc"])
        value = derived["value"]
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": str(uuid.uuid4()),
            "status": calcium.get("status") if calcium.get("status") in (
                "final", "amended", "corrected", "preliminary") else "final",
            "category": [codes.category("laboratory")],
            "code": {"coding": [{"system": codes.LOINC, "code": loinc.code, "display": loinc.display}],
                     "text": analyte.display},
        }
        for key in ("subject", "encounter", "effectiveDateTime", "effectivePeriod", "effectiveInstant"):
            if key in calcium:
                resource[key] = copy.deepcopy(calcium[key])
        resource["valueQuantity"] = quantity(sig(value["value"]), value["unit"])
        resource["method"] = {"text": derived["formula"]}
        resource["derivedFrom"] = [{"reference": urls[id(item)], "display": ref["analyte"]}
                                   for item, ref in zip(sources, derived["derived_from"], strict=True)]
        self._annotate(resource, derived, outcome, value["unit"], keep_range=False, derived=True)
        resource["note"].append(_note(f"Formula: {derived['formula']} (source: {derived['formula_source']})"))
        return resource


def _note(text: str) -> dict[str, Any]:
    return {"authorString": AUTHOR, "text": text}


def _age_range(rule: Interval) -> dict[str, Any] | None:
    if rule.age_from == 0 and rule.age_to == math.inf:
        return None
    in_years = all(d == math.inf or abs(d / 365.25 - round(d / 365.25)) < 1e-9 for d in (rule.age_from, rule.age_to))
    unit, code, size = ("years", "a", 365.25) if in_years else ("days", "d", 1.0)
    out: dict[str, Any] = {"low": {"value": sig(rule.age_from / size, 6), "unit": unit, "system": codes.UCUM,
                                   "code": code}}
    if rule.age_to != math.inf:
        # FHIR ranges are inclusive; the band's upper age is exclusive, which the text states.
        out["high"] = {"value": sig(rule.age_to / size, 6), "unit": unit, "system": codes.UCUM, "code": code}
    return out


def notes(result: dict[str, Any]) -> list[str]:
    """Markdown notes for one engine result: rule, critical limits, grade, symptoms, warnings."""
    out = []
    label = result["flag_display"] or "Not classified"
    out.append(f"labinterp: {label}. {result['basis']['rule']}")
    ri = result["reference_interval"]
    if ri is not None:
        stated = ri["stated"]
        out.append(f"Reference interval used ({ri['origin']}): {_fmt(stated['low'])} to {_fmt(stated['high'])} "
                   f"{stated['unit']}, {ri['applies_to']} (source: {ri['source']})")
    crit = result["critical_limits"]
    if crit is not None:
        sides = []
        for side in ("low", "high"):
            if crit[side] is None:
                continue
            text = f"critical {side} {crit[side + '_comparison']} {_fmt(crit['stated'][side])} {crit['stated']['unit']}"
            if crit["stated"]["unit"] != crit["unit"]:
                text += f" ({_fmt(crit[side])} {crit['unit']})"
            sides.append(text)
        if sides:
            out.append(f"Critical limits ({crit['origin']}): {'; '.join(sides)} (source: {crit['source']})"
                       + (". CRITICAL RESULT." if result["critical"] else "."))
    grade = result["ctcae"]
    if grade is not None:
        edges = grade["edges"]
        out.append(f"CTCAE v{grade['version']} {grade['term']}: grade {grade['grade']} ({grade['basis']}; edges in "
                   f"{edges['unit']}: grade 2 {_fmt(edges['grade_2'])}, grade 3 {_fmt(edges['grade_3'])}, "
                   f"grade 4 {_fmt(edges['grade_4'])}) (source: {grade['source']})"
                   + (f". {grade['note']}" if grade.get("note") else ""))
    if result["symptoms"]:
        by_source: dict[str, list[str]] = {}
        for symptom in result["symptoms"]:
            by_source.setdefault(symptom["source"], []).append(f"{symptom['text']} ({symptom['system']})")
        for source, texts in by_source.items():
            out.append(f"Symptoms associated with {result.get('condition', '')}: " + "; ".join(texts)
                       + f" (source: {source})")
    for note in result["notes"]:
        out.append(note["text"] + (f" (source: {note['source']})" if note.get("source") else ""))
    for warning in result["warnings"]:
        out.append(f"Warning ({warning['code']}): {warning['text']}"
                   + (f" (source: {warning['source']})" if warning.get("source") else ""))
    return out
