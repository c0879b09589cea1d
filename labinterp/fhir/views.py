"""The FHIR R4 door: POST /fhir/Observation/$interpret, GET /fhir/metadata."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request
from flask_smorest import Blueprint
from pydantic import ValidationError

from labinterp import __version__
from labinterp.api.guards import is_json_type, json_depth_exceeds
from labinterp.fhir import codes, openapi
from labinterp.fhir.translate import Reader, interpret
from labinterp.fhir.writer import Writer

FHIR_JSON = "application/fhir+json"
OPERATION_ID = "Observation-interpret"

blp = Blueprint("fhir", __name__, url_prefix="/fhir",
                description="FHIR R4: interpretation of Observations (calcium, ionized calcium, magnesium, "
                "potassium, albumin) by LOINC code, answered as a collection Bundle.")


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body, allow_nan=False), status=status, mimetype=FHIR_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def outcome(status: int, detail: str, issues: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """An error OperationOutcome: the detail first, then one issue per problem found."""
    issue_type = codes.ISSUE_TYPE_FOR_STATUS.get(status, "processing")
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": issue_type, "diagnostics": detail}, *(issues or [])]}
    return fhir_response(body, status, headers)


def render_error(status: int, detail: str, code: str | None, errors: list[dict[str, str]] | None,
                 headers: dict[str, str]) -> Response:
    """The app-wide error hook for /fhir paths: OperationOutcome instead of problem+json."""
    issue_type = codes.ISSUE_TYPE_FOR_STATUS.get(status, "processing")
    issues = []
    for error in errors or []:
        issues.append({"severity": "error", "code": issue_type,
                       "diagnostics": f"{error.get('pointer') or '/'}: {error.get('reason')}"})
    return outcome(status, detail, issues, headers)


def _settings() -> dict[str, Any]:
    return current_app.extensions["labinterp"].settings  # type: ignore[no-any-return]


def _validation_issues(error: ValidationError, root: str) -> list[dict[str, Any]]:
    issues = []
    for e in error.errors()[:50]:
        path = root
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif str(part) not in ("__root__",):
                path += f".{part}"
        kind = "required" if e["type"] == "missing" else "structure" if e["type"] == "extra_forbidden" else "value"
        issues.append({"severity": "error", "code": kind, "diagnostics": f"{path}: {e['msg']}",
                       "expression": [path]})
    return issues


# FHIR JSON primitives the service reads, whose JSON type R4B models would coerce (a date from a
# number, a decimal from a string): checked here so that a wrong JSON type is refused, not guessed.
_STRING_KEYS = frozenset(("birthDate", "effectiveDateTime", "effectiveInstant", "unit", "system", "display",
                          "text", "reference", "fullUrl", "id", "status", "gender", "comparator", "resourceType"))
_QUANTITY_KEYS = frozenset(("valueQuantity", "low", "high"))


def _first_empty(value: Any, path: str) -> tuple[str, str] | None:
    """The first null, empty object, array or string, or mistyped primitive, as (FHIRPath, what)."""
    if isinstance(value, dict):
        if not value:
            return path, "empty object"
        for key, item in value.items():
            if item is None:
                return f"{path}.{key}", "null"
            if key in _STRING_KEYS and not isinstance(item, (str, dict, list)):
                return f"{path}.{key}", "must be a JSON string"
            if key in ("code", "type") and not isinstance(item, (str, dict, list)):
                return f"{path}.{key}", "must be a JSON string or object"
            if (key in _QUANTITY_KEYS and isinstance(item, dict) and "value" in item
                    and (isinstance(item["value"], bool) or not isinstance(item["value"], (int, float)))):
                return f"{path}.{key}.value", "must be a JSON number"
            found = _first_empty(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        if not value:
            return path, "empty array"
        for i, item in enumerate(value):
            found = _first_empty(item, f"{path}[{i}]") if item is not None else None
            if found:
                return found
    elif isinstance(value, str) and value == "":
        return path, "empty string"
    return None


# Required bindings of the elements the service reads (R4B models do not check terminology).
_REQUIRED_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Observation", "status"): ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                "entered-in-error", "unknown"),
    ("Patient", "gender"): ("male", "female", "other", "unknown"),
}
_COMPARATORS = ("<", "<=", ">=", ">")


def _bad_code(body: dict[str, Any]) -> tuple[str, str] | None:
    resources = [(body, body["resourceType"])]
    if body["resourceType"] == "Bundle":
        resources = [(e["resource"], f"Bundle.entry[{i}].resource") for i, e in enumerate(body.get("entry") or [])
                     if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    for resource, path in resources:
        for (kind, element), allowed in _REQUIRED_CODES.items():
            if resource.get("resourceType") == kind and element in resource and resource[element] not in allowed:
                return f"{path}.{element}", f"must be one of {', '.join(allowed)}"
        if resource.get("resourceType") != "Observation":
            continue
        quantities = [("valueQuantity", resource.get("valueQuantity"))]
        for i, rr in enumerate(resource.get("referenceRange") or []):
            if isinstance(rr, dict):
                quantities += [(f"referenceRange[{i}].{side}", rr.get(side)) for side in ("low", "high")]
        for where, quantity in quantities:
            if isinstance(quantity, dict) and "comparator" in quantity and quantity["comparator"] not in _COMPARATORS:
                return f"{path}.{where}.comparator", f"must be one of {', '.join(_COMPARATORS)}"
    return None


def _read_body() -> dict[str, Any] | Response:
    if not is_json_type(request.mimetype):
        return outcome(415, f"Send the body as {FHIR_JSON} or application/json "
                       f"(got '{request.mimetype or 'none'}').")
    raw = request.get_data(cache=True)
    depth = _settings()["MAX_JSON_DEPTH"]
    if json_depth_exceeds(raw, depth):
        return outcome(400, f"The JSON body is nested more than {depth} levels deep.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return outcome(400, "The body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        return outcome(422, "The body is not a FHIR resource: send an Observation or a Bundle of Observations "
                       "(a JSON object with resourceType).")
    kind = body["resourceType"]
    if kind not in ("Observation", "Bundle"):
        return outcome(422, f"resourceType '{kind[:40]}' is not accepted: send an Observation or a Bundle "
                       "of Observations.")
    if kind == "Bundle" and body.get("type") not in codes.ACCEPTED_BUNDLE_TYPES:
        shown = body.get("type") if isinstance(body.get("type"), str) else "missing"
        return outcome(422, f"Bundle type '{str(shown)[:40]}' is not accepted: use one of "
                       f"{', '.join(codes.ACCEPTED_BUNDLE_TYPES)}.",
                       [{"severity": "error", "code": "not-supported", "expression": ["Bundle.type"],
                         "diagnostics": f"Bundle.type must be one of {', '.join(codes.ACCEPTED_BUNDLE_TYPES)}"}])
    empty = _first_empty(body, kind)
    if empty is not None:
        return outcome(422, f"The {kind} is not valid FHIR JSON.", [{
            "severity": "error", "code": "structure", "expression": [empty[0]],
            "diagnostics": f"{empty[0]}: {empty[1]} (FHIR JSON has no null values and no empty objects, "
                           "arrays or strings)"}])
    bad = _bad_code(body)
    if bad is not None:
        return outcome(422, f"The {kind} is not valid FHIR R4.", [{
            "severity": "error", "code": "code-invalid", "expression": [bad[0]], "diagnostics": f"{bad[0]}: {bad[1]}"}])
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(kind).model_validate(body)
    except ValidationError as error:
        return outcome(422, f"The {kind} is not valid FHIR R4.", _validation_issues(error, kind))
    except (ValueError, TypeError, KeyError):
        return outcome(422, f"The {kind} is not valid FHIR R4.")
    if kind == "Bundle":
        count = sum(1 for e in body.get("entry") or []
                    if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                    and e["resource"].get("resourceType") == "Observation")
        limit = _settings()["MAX_RESULTS"]
        if count > limit:
            return outcome(422, f"At most {limit} Observations per request (got {count}).",
                           [{"severity": "error", "code": "too-costly", "expression": ["Bundle.entry"],
                             "diagnostics": f"at most {limit} Observations per request"}])
    return body  # type: ignore[no-any-return]


@blp.route("/Observation/$interpret", methods=["POST"])
@blp.doc(**openapi.INTERPRET_DOC)
def interpret_observations() -> Response:
    """Interpret FHIR Observations (operation $interpret).

    Accepts one Observation or a Bundle (collection, batch, searchset, transaction) of
    Observations, with the Patient for age and sex. Answers a collection Bundle: each
    Observation as sent plus interpretation (v3 LL/L/N/H/HH), referenceRange when it had
    none, and notes (critical limits, CTCAE grade, symptoms with sources, warnings);
    albumin-corrected calcium as its own Observation (LOINC 29265-6) with derivedFrom;
    Observations it cannot interpret untouched, each followed by an OperationOutcome.
    """
    body = _read_body()
    if isinstance(body, Response):
        return body
    engine = current_app.extensions["labinterp"].engine
    translation = interpret(engine, Reader(engine.knowledge).read(body))
    return fhir_response(Writer(engine.knowledge).bundle(translation))


@blp.route("/metadata", methods=["GET"])
@blp.doc(**openapi.METADATA_DOC)
def metadata() -> Response:
    """CapabilityStatement: the $interpret operation on Observation."""
    base = request.url_root.rstrip("/") + "/fhir"
    return fhir_response({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "labinterp",
        "kind": "instance",
        "software": {"name": "labinterp", "version": __version__},
        "implementation": {"description": "labinterp FHIR door: interpretation of calcium, ionized calcium, "
                           "magnesium and potassium Observations (with albumin for corrected calcium).",
                           "url": base},
        "fhirVersion": codes.FHIR_VERSION,
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Only the $interpret operation is offered; the service stores nothing.",
            "resource": [{
                "type": "Observation",
                "operation": [{"name": "interpret", "definition": f"{base}/OperationDefinition/{OPERATION_ID}",
                               "documentation": "POST an Observation or a Bundle of Observations; the answer is "
                               "a collection Bundle of the Observations with interpretation, referenceRange, "
                               "notes, derived corrected calcium and OperationOutcomes."}],
            }],
        }],
    })


@blp.route(f"/OperationDefinition/{OPERATION_ID}", methods=["GET"])
@blp.doc(**openapi.METADATA_DOC)
def operation_definition() -> Response:
    """OperationDefinition of $interpret."""
    base = request.url_root.rstrip("/") + "/fhir"
    return fhir_response({
        "resourceType": "OperationDefinition",
        "id": OPERATION_ID,
        "url": f"{base}/OperationDefinition/{OPERATION_ID}",
        "name": "Interpret",
        "status": "active",
        "kind": "operation",
        "code": "interpret",
        "resource": ["Observation"],
        "system": False,
        "type": True,
        "instance": False,
        "affectsState": False,
        "description": "Interprets the Observations sent (an Observation or a Bundle) against sourced reference "
                       "intervals, critical limits and CTCAE v5.0 grades.",
        "inputProfile": "http://hl7.org/fhir/StructureDefinition/Bundle",
        "parameter": [
            {"name": "resource", "use": "in", "min": 1, "max": "1", "type": "Resource",
             "documentation": "The Observation or Bundle, sent as the body itself (not in Parameters)."},
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Bundle",
             "documentation": "A collection Bundle."},
        ],
    })
