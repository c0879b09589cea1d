"""The FHIR R4 door: POST /fhir/Observation/$interpret, GET /fhir/metadata."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request
from flask_smorest import Blueprint

from labinterp import __version__
from labinterp.core import Engine, InvalidInput
from labinterp.core.knowledge import Knowledge
from labinterp.fhirio import codes, openapi
from labinterp.fhirio.translate import Reader, Translation, interpret, interpretable
from labinterp.fhirio.validation import check_resource
from labinterp.fhirio.writer import Writer
from labinterp.http.body import is_json_type, json_depth_exceeds

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


def _read_body() -> dict[str, Any] | Response:
    if not is_json_type(request.mimetype):
        return outcome(415, f"Send the body as {FHIR_JSON} or application/json "
                       f"(got '{request.mimetype or 'none'}').")
    # The FHIR door has its own limit: a whole patient Bundle is larger than any v1 request.
    request.max_content_length = _settings()["FHIR_MAX_BODY_BYTES"]
    raw = request.get_data(cache=True)
    depth = _settings()["MAX_JSON_DEPTH"]
    if json_depth_exceeds(raw, depth):
        return outcome(400, f"The JSON body is nested more than {depth} levels deep.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return outcome(400, "The body is not valid JSON.")
    problem = check_resource(body, ("Observation", "Bundle"))
    if problem is not None:
        return outcome(422, problem[0], problem[1])
    kind = body["resourceType"]
    if kind == "Bundle":
        # Only the Observations the service would interpret count: a patient Bundle also carries vital
        # signs, surveys and other results, passed through untouched.
        knowledge = current_app.extensions["labinterp"].engine.knowledge
        count = sum(1 for e in body.get("entry") or []
                    if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                    and e["resource"].get("resourceType") == "Observation" and interpretable(knowledge, e["resource"]))
        limit = _settings()["MAX_RESULTS"]
        if count > limit:
            return outcome(422, f"At most {limit} Observations this service interprets per request (got {count}).",
                           [{"severity": "error", "code": "too-costly", "expression": ["Bundle.entry"],
                             "diagnostics": f"at most {limit} interpretable Observations per request"}])
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
    read = interpreted_request()
    if isinstance(read, Response):
        return read
    _, knowledge, translation = read
    return fhir_response(Writer(knowledge).bundle(translation))


def interpreted_request() -> tuple[str | None, Knowledge, Translation] | Response:
    """The request's Observations read and interpreted against the profile `?lab=` names (its name, its
    knowledge, the translation); or the OperationOutcome saying why not."""
    body = _read_body()
    if isinstance(body, Response):
        return body
    engine = current_app.extensions["labinterp"].engine
    profile = requested_profile(engine)
    if isinstance(profile, Response):
        return profile
    lab, knowledge = profile
    return lab, knowledge, interpret(engine, Reader(knowledge).read(body), lab)


def requested_profile(engine: Engine) -> tuple[str | None, Knowledge] | Response:
    """The laboratory profile `?lab=` names (None: the defaults) and its knowledge, or the 422 OperationOutcome
    saying why it is unknown."""
    lab = request.args.get("lab") or None
    try:
        return lab, engine.profile(lab)
    except InvalidInput as error:
        return outcome(422, error.errors[0].reason)


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
