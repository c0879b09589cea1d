"""Outcomes -> the v1 JSON answer (also the text every other renderer quotes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from labinterp.core.engine import Engine
from labinterp.core.knowledge import ComparisonEdge, Critical, Interval, Knowledge
from labinterp.core.model import Panel
from labinterp.core.outcomes import Derived, Note, Outcome, PanelOutcome, PatternHit
from labinterp.core.rules import CTCAE_VERSION
from labinterp.render.numbers import four, general

FLAG_DISPLAY = {"LL": "Critical low", "L": "Low", "N": "Normal", "H": "High", "HH": "Critical high"}
CTCAE_BASIS = ("laboratory value only: CTCAE grades 2-4 also carry clinical criteria "
               "(symptoms, hospitalisation, life-threatening consequences) that a value cannot show")


def interpret(engine: Engine, panel: Panel) -> dict[str, Any]:
    """Interpret one panel and render the v1 answer (raises InvalidInput as the engine does)."""
    return answer(engine.interpret(panel))


def answer(outcome: PanelOutcome, *, packed: bool = False) -> dict[str, Any]:
    """The v1 answer. `packed`: for orjson.dumps only: the parts that belong to a rule, not to the result
    (its interval, limits, symptoms, the edges compared, the conversion) are given as their JSON text,
    written once per rule; orjson.dumps then writes the same bytes as for the plain answer."""
    k = outcome.knowledge
    return {
        "results": [result(k, r, packed=packed) for r in outcome.results],
        "derived": [derived(k, d) for d in outcome.derived],
        "patterns": [pattern(k, p) for p in outcome.patterns],
        "caveats": [{"code": c.code, "text": c.text, "source": k.source_title(c.source)} for c in outcome.caveats],
        "data_version": k.data_version,
        "laboratory": k.lab,
        "disclaimer": k.disclaimer,
        "symptoms_note": k.symptoms_note,
    }


def derived(k: Knowledge, d: Derived) -> dict[str, Any]:
    out = result(k, d.outcome)
    out["formula"] = d.formula.formula
    out["formula_source"] = k.source_title(d.formula.source)
    out["derived_from"] = [{"index": m.index, "id": m.id, "analyte": m.analyte} for m in (d.calcium, d.albumin)]
    return out


def pattern(k: Knowledge, hit: PatternHit) -> dict[str, Any]:
    p = hit.pattern
    return {"id": p.id, "title": p.title, "text": p.text, "source": k.source_title(p.source),
            "results": [{"index": m.index, "id": m.id, "analyte": m.analyte, "flag": m.flag} for m in hit.members]}


def result(k: Knowledge, r: Outcome, *, packed: bool = False) -> dict[str, Any]:
    v = r.verdict
    analyte = k.analytes[r.analyte]
    # each part that belongs to a rule: built by its function, or, packed, that function's JSON text
    part: Callable[[str, object, Callable[[], Any]], Any] = _packed(k) if packed else _built
    rule = r.interval
    out: dict[str, Any] = {
        "id": r.id,
        "analyte": r.analyte,
        "loinc": r.loinc,
        "input": {"value": r.input_value, "unit": r.input_unit},
        "value": {"value": r.value, "unit": analyte.canonical_unit},
        "specimen": r.specimen,
        "reference_interval": interval(k, r) if r.sent is not None or rule is None
        else part("interval", rule, lambda: interval_rule(k, rule)),
        "critical_limits": part("critical", r.critical_rule, lambda: critical_limits(k, r.critical_rule)),
        "classification": v.classification,
        "classification_reason": v.reason,
        "flag": v.flag,
        "flag_display": FLAG_DISPLAY.get(v.flag or ""),
        "critical": v.critical,
        "ctcae": ctcae(k, r),
        "symptoms": [],
        "notes": [],
        "warnings": [warning(k, r, n) for n in r.notes],
    }
    if r.comparator:
        out["input"]["comparator"] = r.comparator
        out["value"]["comparator"] = r.comparator
    if v.classification in ("hypo", "hyper"):
        out["condition"] = analyte.condition_low if v.classification == "hypo" else analyte.condition_high
    # the symptoms of the result's own classification, or of the one the engine says applies instead
    listed = v.classification if r.symptoms_from is None else r.symptoms_from
    if listed in ("hypo", "hyper"):
        condition = analyte.condition_low if listed == "hypo" else analyte.condition_high
        out["symptoms"] = part("symptoms", condition, lambda: symptoms(k, condition))
        out["notes"] = part("symptom_notes", condition, lambda: symptom_notes(k, condition))
    out["basis"] = _basis(k, r, part)
    return out


def symptoms(k: Knowledge, condition: str) -> list[dict[str, Any]]:
    return [{"text": s.text, "system": s.system, "source": k.source_title(s.source)}
            for s in k.symptoms.get(condition, ())]


def symptom_notes(k: Knowledge, condition: str) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = [{"text": s.text, "source": k.source_title(s.source)}
                                   for s in k.symptom_notes.get(condition, ())]
    if condition in k.coverage:
        notes.append({"text": k.coverage[condition], "source": None})
    return notes


def _built(kind: str, key: object, build: Callable[[], Any]) -> Any:
    return build()


_PACKED: dict[tuple[str, int, int], tuple[object, object, orjson.Fragment]] = {}
MAX_PACKED = 4096


def _packed(k: Knowledge) -> Callable[[str, object, Callable[[], Any]], Any]:
    """A part's JSON text, written once per (knowledge, kind, rule object). The entry holds the knowledge and
    the object, so their identities stay theirs while it is kept; the text is immutable bytes."""
    def part(kind: str, key: object, build: Callable[[], Any]) -> Any:
        if key is None:
            return build()
        found = _PACKED.get((kind, id(k), id(key)))
        if found is None:
            if len(_PACKED) > MAX_PACKED:
                _PACKED.clear()
            found = _PACKED[(kind, id(k), id(key))] = (k, key, orjson.Fragment(orjson.dumps(build())))
        return found[2]
    return part


def interval(k: Knowledge, r: Outcome) -> dict[str, Any] | None:
    canonical = k.analytes[r.analyte].canonical_unit
    if r.sent is not None:
        sent = r.sent.stated
        return {"low": r.sent.low, "high": r.sent.high, "unit": canonical,
                "applies_to": "as sent with the result", "origin": "result",
                "source": sent.text or "the laboratory's interval sent with the result",
                "stated": {"low": sent.low, "high": sent.high, "unit": sent.unit or r.input_unit}}
    rule = r.interval
    if rule is None:
        return None
    return interval_rule(k, rule)


def bounds(r: Outcome) -> tuple[float | None, float | None] | None:
    """The interval the result was classified against, in the canonical unit (None: no interval)."""
    if r.sent is not None:
        return r.sent.low, r.sent.high
    if r.interval is not None:
        return r.interval.low, r.interval.high
    return None


def bounds_in_unit(r: Outcome, factor: float) -> tuple[float | None, float | None] | None:
    """That interval in a unit whose factor to the canonical unit is `factor` (the result's own: r.factor)."""
    found = bounds(r)
    if found is None:
        return None
    low, high = found
    return None if low is None else low / factor, None if high is None else high / factor


def interval_rule(k: Knowledge, rule: Interval) -> dict[str, Any]:
    applies = rule.describe()
    if k.lab and rule.origin == "laboratory":
        applies += f" (laboratory {k.lab})"
    return {"low": rule.low, "high": rule.high, "unit": k.analytes[rule.analyte].canonical_unit,
            "applies_to": applies, "origin": rule.origin, "source": k.source_title(rule.source),
            "stated": {"low": rule.stated_low, "high": rule.stated_high, "unit": rule.unit}}


def critical_limits(k: Knowledge, rule: Critical | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "low": rule.low, "high": rule.high, "unit": k.analytes[rule.analyte].canonical_unit,
        "low_comparison": None if rule.low is None else ("<=" if rule.low_inclusive else "<"),
        "high_comparison": None if rule.high is None else (">=" if rule.high_inclusive else ">"),
        "origin": rule.origin, "source": k.source_title(rule.source),
        "stated": {"low": rule.stated_low, "high": rule.stated_high, "unit": rule.unit},
    }


def ctcae(k: Knowledge, r: Outcome) -> dict[str, Any] | None:
    term = r.ctcae_term
    if term is None:
        return None
    out = {"grade": r.verdict.grade, "term": term.term, "version": CTCAE_VERSION, "laboratory_only": True,
           "basis": CTCAE_BASIS,
           "edges": {"unit": term.unit, "grade_2": term.stated_edges[0], "grade_3": term.stated_edges[1],
                     "grade_4": term.stated_edges[2], "canonical": [term.edges[0], term.edges[1], term.edges[2]]},
           "source": k.source_title(term.source)}
    if term.note:
        out["note"] = term.note
    return out


def warning(k: Knowledge, r: Outcome, note: Note) -> dict[str, Any]:
    """A note as the data words it, its fields filled from the outcome (never from free text sent)."""
    message = k.messages.get(note.code, {"text": note.code})
    fields = _fields(k, r, note)
    out = {"code": note.code, "text": message["text"].format(**fields) if fields else message["text"]}
    if "source" in message:
        out["source"] = k.source_title(message["source"])
    return out


def _fields(k: Knowledge, r: Outcome, note: Note) -> dict[str, Any]:
    code = note.code
    if code == "implausible":
        limits = r.implausible_rule
        assert limits is not None
        return {"limit": f"{general(limits.stated_low)}-{general(limits.stated_high)} {limits.unit}"}
    if code == "no_interval":
        return {"reason": r.interval_reason or "none in the data"}
    if code == "off_scale":
        return {"comparator": r.comparator, "value": general(r.input_value), "unit": r.input_unit}
    if code == "no_critical_limit":
        crit = r.critical_rule
        assert crit is not None
        return {"side": note.side, "reason": crit.low_missing_reason if note.side == "low"
                else crit.high_missing_reason}
    if code == "hemolysis":
        return {"hemolysis": (r.hemolysis or "").replace("_", " ")}
    if code == "corrected_calcium_limitations":
        return {"limitations": k.corrected_calcium.limitations}
    if code == "sent_range_completed":
        assert r.sent is not None and r.sent.completed_from is not None
        rule = r.sent.completed_from
        stated = rule.stated_low if note.side == "low" else rule.stated_high
        return {"side": note.side, "bound": f"{general(stated)} {rule.unit}", "applies_to": rule.describe(),
                "source": k.source_title(rule.source)}
    if code == "sent_range_not_completed":
        return {"side": note.side}
    if code == "unit_from_code":
        assert r.code is not None
        return {"unit": r.code.unit, "system": r.code.system, "code": r.code.code}
    return {}


def code_read(r: Outcome) -> dict[str, Any] | None:
    """Which code the result was sent with and what it was taken to mean (None: sent by analyte name)."""
    c = r.code
    if c is None:
        return None
    return {"system": c.system, "code": c.code,
            "defined_by": "LOINC (reference_ranges/analytes.toml)" if c.origin == "loinc"
            else "the laboratory profile's codes.toml",
            "display": c.display, "taken_as": {"analyte": c.analyte, "property": c.property, "specimen": c.specimen}}


def conversion(k: Knowledge, r: Outcome) -> dict[str, Any]:
    analyte = k.analytes[r.analyte]
    canonical = analyte.canonical_unit
    out: dict[str, Any] = {"from": r.ucum, "to": canonical, "factor": r.factor,
                           "derived_with": "pint, once at start-up"}
    unit_kind = k.units[r.ucum].kind
    if unit_kind == "mass" and canonical != "g/L" and analyte.molar_mass:
        out["molar_mass_g_per_mol"] = analyte.molar_mass
    if unit_kind == "equivalent":
        out["valence"] = analyte.valence
    return out


def _basis(k: Knowledge, r: Outcome, part: Callable[[str, object, Callable[[], Any]], Any] = _built
           ) -> dict[str, Any]:
    canonical = k.analytes[r.analyte].canonical_unit
    limits = r.implausible_rule
    basis = {
        "rule": rule_text(r, canonical),
        "compared_with": part("compared", r.compared, lambda: [_edge(e) for e in r.compared]),
        "conversion": conversion(k, r),
        "implausible_limits": None if limits is None else part("implausible", limits, lambda: {
            "low": limits.low, "high": limits.high, "unit": canonical,
            "policy": "local", "reasoning": limits.reasoning, "source": k.source_title(limits.source)}),
    }
    if r.code is not None:
        basis["code"] = code_read(r)
    return basis


def _edge(edge: ComparisonEdge) -> dict[str, Any]:
    """An edge as the data states it and as it was compared (precision_adjusted: a figure stated in the
    other unit family, compared at the decimals it is stated with)."""
    out = dict(edge.basis.items)
    del out["source"]  # the interval's or the limits' own, given beside them
    return out


def rule_text(r: Outcome, unit: str) -> str:
    """The rule that decided the verdict, with the numbers it compared."""
    v = r.verdict
    shown = f"{r.comparator or ''}{r.value:.4g} {unit}"
    if r.comparator and v.reason is None:
        shown += " (its whole range)"
    if v.reason == "implausible":
        return f"{shown} lies beyond the implausible limits: not classified"
    if v.reason == "off_scale":
        return f"{shown} is off scale and its range straddles an edge: not classified"
    crit = r.critical_rule
    if v.flag == "LL":
        assert crit is not None and crit.low is not None
        return f"{shown} is {'<=' if crit.low_inclusive else '<'} the critical low {crit.low:.4g} {unit}: LL"
    if v.flag == "HH":
        assert crit is not None and crit.high is not None
        return f"{shown} is {'>=' if crit.high_inclusive else '>'} the critical high {crit.high:.4g} {unit}: HH"
    if v.reason == "no_interval":
        return f"{shown}: no reference interval applies"
    low, high = bounds(r) or (None, None)
    stated = f"[{four(low)}, {four(high)}] {unit} (inclusive"
    stated += ", compared at the precision its edges are stated with)" if any(
        e.basis.precision_adjusted for e in r.compared) else ")"
    if v.flag == "L":
        return f"{shown} is below the interval {stated}: L"
    if v.flag == "H":
        return f"{shown} is above the interval {stated}: H"
    return f"{shown} is within the interval {stated}: N"
