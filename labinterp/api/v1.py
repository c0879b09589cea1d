"""The v1 JSON door: POST /v1/interpret and the reference listings."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint

from labinterp.core.engine import Engine
from labinterp.core.knowledge import EdgeSide
from labinterp.core.model import Panel
from labinterp.http import loading, schemas
from labinterp.http.problems import too_many_results
from labinterp.http.responses import json_response
from labinterp.render import v1 as render

blp = Blueprint("v1", __name__, url_prefix="/v1", description="Interpretation of calcium, magnesium and "
                "potassium results (with albumin for corrected calcium).")
# Schema objects are built once: a schema built per request costs more than the whole interpretation.
PANEL_SCHEMA = schemas.PanelSchema()
PROBLEM = {"schema": schemas.ProblemOut, "content_type": "application/problem+json"}


def engine() -> Engine:
    return current_app.extensions["labinterp"].engine  # type: ignore[no-any-return]


@blp.route("/interpret", methods=["POST"])
@loading.json_arguments(blp, PANEL_SCHEMA, as_kwargs=False)
@loading.documentation_only
@blp.response(200, schemas.InterpretationOut)
@blp.alt_response(400, **PROBLEM, description="Malformed JSON or nesting too deep")
@blp.alt_response(413, **PROBLEM, description="Body larger than configured")
@blp.alt_response(415, **PROBLEM, description="Body is not JSON")
@blp.alt_response(422, **PROBLEM, description="Invalid fields, each named by a JSON pointer")
def interpret(panel: Panel) -> Response:
    """Interpret one panel of results.

    Each result is normalised to its canonical unit, classified against the interval that
    applies (sent with the result, the laboratory profile's, or the default), checked
    against critical and implausible limits, graded (CTCAE v5.0, laboratory-only) and given
    the symptoms its sources associate with it. The basis of every verdict is in the answer.
    """
    services = current_app.extensions["labinterp"]
    refused = too_many_results(len(panel.results), services.settings["MAX_RESULTS"])
    if refused is not None:
        return refused
    return json_response(render.answer(services.engine.interpret(panel), packed=True))


@blp.route("/analytes", methods=["GET"])
@blp.response(200)
def analytes() -> Response:
    """Analytes, their LOINC codes, canonical unit, accepted units, molar mass and valence."""
    k = engine().knowledge
    out = []
    for a in k.analytes.values():
        out.append({
            "id": a.id, "display": a.display, "derived": a.derived,
            "loinc": [{"code": c.code, "display": c.display, "property": c.property,
                       "specimen": c.specimen} for c in a.loinc],
            "canonical_unit": a.canonical_unit,
            "accepted_units": [{"ucum": u, "kind": k.units[u].kind, "factor_to_canonical": k.factors[(a.id, u)],
                                "spellings": sorted(s for s, code in k.spellings_exact.items() if code == u)}
                               for u in k.accepted_units(a.id)],
            "molar_mass": a.molar_mass, "valence": a.valence,
            "molar_mass_source": k.source_title("ciaaw") if a.molar_mass else None,
        })
    return json_response({"analytes": out, "data_version": k.data_version})


@blp.route("/reference-intervals", methods=["GET"])
@blp.arguments(schemas.LabQuery, location="query", as_kwargs=True)
@blp.response(200)
@blp.alt_response(422, **PROBLEM, description="Unknown laboratory profile")
def reference_intervals(lab: str | None = None) -> Response:
    """The intervals, critical and implausible limits and CTCAE edges in force, with sources."""
    k = engine().profile(lab)
    body: dict[str, Any] = {"data_version": k.data_version, "laboratory": k.lab, "intervals": [],
                            "critical_limits": [], "implausible_limits": [], "ctcae": [],
                            "laboratories": sorted(engine().knowledge.profiles)}
    for analyte, rules in k.intervals.items():
        canonical = k.analytes[analyte].canonical_unit
        for r in rules:
            body["intervals"].append({
                "analyte": analyte, "specimens": list(r.specimens), "sex": r.sex, "applies_to": r.describe(),
                "age_from_days": r.age_from, "age_to_days": None if r.age_to == float("inf") else r.age_to,
                "age_from_included": r.age_from_included, "age_to_included": r.age_to_included,
                "ages_stated": r.ages_stated or None, "borrowed": r.borrowed or None,
                "figures": _figures(r.low_side, r.high_side),
                "established": r.established, "reason": r.reason or None, "low": r.low, "high": r.high,
                "unit": canonical, "stated": {"low": r.stated_low, "high": r.stated_high, "unit": r.unit},
                "bounds": "inclusive", "adult_default": r.adult_default, "origin": r.origin,
                "source": k.source_title(r.source)})
    for analyte, crits in k.critical.items():
        for c in crits:
            body["critical_limits"].append({
                "analyte": analyte, "age_from_days": c.age_from,
                "age_to_days": None if c.age_to == float("inf") else c.age_to,
                "age_from_included": c.age_from_included, "age_to_included": c.age_to_included,
                "ages_stated": c.ages_stated or None, "note": c.note or None,
                "comparison_note": c.comparison_note or None, "figures": _figures(c.low_side, c.high_side),
                "low": c.low, "low_comparison": None if c.low is None else ("<=" if c.low_inclusive else "<"),
                "high": c.high, "high_comparison": None if c.high is None else (">=" if c.high_inclusive else ">"),
                "unit": k.analytes[analyte].canonical_unit,
                "stated": {"low": c.stated_low, "high": c.stated_high, "unit": c.unit},
                "low_missing_reason": c.low_missing_reason or None,
                "high_missing_reason": c.high_missing_reason or None,
                "origin": c.origin, "source": k.source_title(c.source)})
    for analyte, i in k.implausible.items():
        body["implausible_limits"].append({
            "analyte": analyte, "low": i.low, "high": i.high, "unit": k.analytes[analyte].canonical_unit,
            "stated": {"low": i.stated_low, "high": i.stated_high, "unit": i.unit}, "policy": "local",
            "reasoning": i.reasoning, "source": k.source_title(i.source)})
    for (analyte, direction), t in k.ctcae.items():
        body["ctcae"].append({
            "analyte": analyte, "term": t.term, "direction": direction, "version": "5.0",
            "edges": {"unit": t.unit, "grade_2": t.stated_edges[0], "grade_3": t.stated_edges[1],
                      "grade_4": t.stated_edges[2]},
            "edges_canonical": list(t.edges), "note": t.note or None, "source": k.source_title(t.source)})
    return json_response(body)


def _figures(low: EdgeSide | None, high: EdgeSide | None) -> dict[str, list[dict[str, str]]]:
    """Each bound as its sources state it: one figure per unit family, with its stated digits."""
    return {name: [] if side is None else [{"stated": f.text, "unit": f.unit, "family": f.family} for f in side.figures]
            for name, side in (("low", low), ("high", high))}
