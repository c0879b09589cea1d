"""The CDS Hooks 2.0 door: GET /cds-services (discovery), POST /cds-services/{id} (cards)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from flask import Response, current_app, request
from flask_smorest import Blueprint

from labinterp.cdshooks import openapi
from labinterp.cdshooks.auth import AuthError, JwtConfig, verify
from labinterp.cdshooks.cards import HOOK, SERVICE_ID, CardMaker, discovery, prefetch_templates
from labinterp.cdshooks.fetch import FetchRefused, FetchSettings, Unavailable, fetch
from labinterp.fhirio.validation import check_resource
from labinterp.http.body import is_json_type, json_depth_exceeds
from labinterp.http.problems import problem

blp = Blueprint("cdshooks", __name__, url_prefix="/cds-services",
                description="CDS Hooks 2.0: patient-view cards for calcium, magnesium and potassium results.")
log = logging.getLogger("labinterp.cdshooks")
PREFETCH_KEYS = ("patient", "labs")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, allow_nan=False), status=status, mimetype="application/json")


def _jwt() -> JwtConfig:
    return current_app.extensions["labinterp_cdshooks"]  # type: ignore[no-any-return]


@blp.after_request
def _cors(response: Response) -> Response:
    for name, value in CORS_HEADERS.items():
        response.headers[name] = value
    return response


@blp.before_request
def _authenticate() -> Response | None:
    config = _jwt()
    # Discovery (GET) holds no patient data and EHR sandboxes fetch it without a token; calls need one.
    if request.method != "POST" or not config.enabled:
        return None
    try:
        verify(config, request.headers.get("Authorization"))
    except AuthError as error:
        return problem(401, f"Unauthorized: {error}.", "invalid-token",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return None


@blp.route("", methods=["GET"])
@blp.doc(**openapi.DISCOVERY_DOC)
def services() -> Response:
    """CDS Hooks discovery: one patient-view service and its prefetch templates."""
    return _json(discovery(current_app.extensions["labinterp"].engine.knowledge))


def _bad(detail: str, pointer: str) -> Response:
    return problem(400, detail, "invalid-cds-request", [{"pointer": pointer, "reason": detail, "code": "invalid"}])


def _check_call(body: Any) -> Response | None:
    if not isinstance(body, dict):
        return _bad("The body must be a JSON object (a CDS Hooks request).", "")
    if body.get("hook") != HOOK:
        return _bad(f"This service answers the '{HOOK}' hook.", "/hook")
    try:
        uuid.UUID(str(body.get("hookInstance")))
        if not isinstance(body.get("hookInstance"), str):
            raise ValueError
    except ValueError:
        return _bad("hookInstance must be a UUID.", "/hookInstance")
    context = body.get("context")
    if not isinstance(context, dict):
        return _bad("context must be an object.", "/context")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        return _bad("context.patientId is required (a string).", "/context/patientId")
    for name in ("userId", "encounterId"):
        if name in context and (not isinstance(context[name], str) or not context[name]):
            return _bad(f"context.{name} must be a non-empty string.", f"/context/{name}")
    if "fhirServer" in body and not isinstance(body["fhirServer"], str):
        return _bad("fhirServer must be a string.", "/fhirServer")
    if "fhirAuthorization" in body and not isinstance(body["fhirAuthorization"], dict):
        return _bad("fhirAuthorization must be an object.", "/fhirAuthorization")
    if "prefetch" in body and not isinstance(body["prefetch"], dict):
        return _bad("prefetch must be an object.", "/prefetch")
    return None


def _unavailable(error: Unavailable) -> Response:
    return problem(412, f"The prefetch this service needs could not be fetched: {error.reason}.",
                   "prefetch-unavailable", [{"pointer": error.pointer, "reason": error.reason, "code": "unavailable"}])


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _fetch(absent: list[str], body: dict[str, Any]) -> dict[str, Any] | Response:
    """The absent prefetch keys from the EHR's FHIR server, or the 400/412 answer saying why not."""
    app = current_app.extensions["labinterp"]
    started = time.monotonic()
    try:
        fetched = fetch(prefetch_templates(app.engine.knowledge), absent, body,
                        FetchSettings.from_settings(app.settings))
    except FetchRefused as refused:
        return _bad(refused.reason + ".", refused.pointer)
    except Unavailable as error:
        # the reason names no URL, patient or token: safe to log
        log.info("CDS Hooks: prefetch not fetched", extra={"event": "cds_fetch", "reason": error.reason[:120],
                                                          "duration_ms": _ms(started)})
        return _unavailable(error)
    log.info("CDS Hooks: prefetch fetched", extra={"event": "cds_fetch", "duration_ms": _ms(started)})
    return fetched


def _prefetched(prefetch: dict[str, Any], key: str, accepted: tuple[str, ...]) -> dict[str, Any] | None:
    """The prefetched resource, None for 'no data'."""
    value = prefetch[key]
    if value is None:
        return None
    found = check_resource(value, (*accepted, "OperationOutcome"))
    if found is not None:
        details = "; ".join(str(i.get("diagnostics")) for i in found[1][:5])
        raise ValueError(f"prefetch.{key}: {found[0]}" + (f" ({details})" if details else ""))
    if value["resourceType"] == "OperationOutcome":
        return None
    return value  # type: ignore[no-any-return]


@blp.route("/<string:service_id>", methods=["POST"])
@blp.doc(**openapi.CALL_DOC)
def call(service_id: str) -> Response:
    """Call the patient-view service: cards from the prefetched Patient and Observations.

    A prefetch key the EHR left out is fetched from the request's fhirServer (https, with its
    fhirAuthorization, from the FHIR servers the deployer allows); when it cannot be, the answer is 412.
    """
    if service_id != SERVICE_ID:
        return problem(404, f"No CDS service '{service_id[:40]}' here: see GET /cds-services.", "unknown-service")
    if not is_json_type(request.mimetype):
        return problem(415, f"Send the body as application/json (got '{request.mimetype or 'none'}').",
                       "unsupported-media-type")
    raw = request.get_data(cache=True)
    depth = current_app.extensions["labinterp"].settings["MAX_JSON_DEPTH"]
    if json_depth_exceeds(raw, depth):
        return problem(400, f"The JSON body is nested more than {depth} levels deep.", "too-deep")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return problem(400, "The body is not valid JSON.", "malformed-json")
    refused = _check_call(body)
    if refused is not None:
        return refused
    patient_id = body["context"]["patientId"]
    prefetch = body.get("prefetch") or {}
    absent = [key for key in PREFETCH_KEYS if key not in prefetch]
    if absent:
        fetched = _fetch(absent, body)
        if isinstance(fetched, Response):
            return fetched
        prefetch = {**prefetch, **fetched}
    found: dict[str, dict[str, Any] | None] = {}
    for key, accepted in (("patient", ("Patient",)), ("labs", ("Bundle",))):
        try:
            found[key] = _prefetched(prefetch, key, accepted)
        except ValueError as error:
            if key in absent:  # the FHIR server's answer is not what the template asks for: not the caller's fault
                return _unavailable(Unavailable(f"the FHIR server's answer is refused: {str(error)[:400]}"))
            return _bad(str(error)[:500], "/prefetch")
    patient, labs = found["patient"], found["labs"]
    if patient is not None and patient.get("id") not in (None, patient_id):
        if "patient" in absent:
            return _unavailable(Unavailable("the FHIR server's Patient is not the patient of context.patientId"))
        return _bad("prefetch.patient is not the patient of context.patientId.", "/prefetch/patient/id")
    observations = []
    for entry in (labs or {}).get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            continue
        subject = resource.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if reference is not None and not of_patient(str(reference), patient_id):
            continue  # another patient's result is never shown on this patient's cards
        resource = {**resource, "subject": {"reference": f"Patient/{patient_id}"}}
        observations.append(resource)
    limit = current_app.extensions["labinterp"].settings["MAX_RESULTS"]
    observations = observations[:limit]
    engine = current_app.extensions["labinterp"].engine
    maker = CardMaker(engine, request.url_root)
    translation = maker.translate(patient_id, patient, observations)
    return _json({"cards": maker.cards(translation)})


def of_patient(reference: str, patient_id: str) -> bool:
    """Whether a subject reference names the patient: Patient/<id>, a full URL ending /Patient/<id>, or
    urn:uuid:<id> (how Synthea and other Bundle writers refer to a Patient by its fullUrl)."""
    return (reference in (f"Patient/{patient_id}", f"urn:uuid:{patient_id}")
            or reference.endswith(f"/Patient/{patient_id}"))
