"""The laboratory doors: POST /v1/interpret/batch, /v1/interpret/csv and /v1/hl7."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from labinterp.core import InvalidInput
from labinterp.core.columnar import ColumnarInterpreter
from labinterp.files.csvfile import OPTIONAL, REQUIRED, CsvHeaderError, CsvJob, CsvLimits
from labinterp.http import schemas, uploads
from labinterp.http.body import check_json_request
from labinterp.http.problems import field_errors, problem
from labinterp.http.uploads import received_csv, streamed, unsupported_type
from labinterp.labwork import hl7, hl7request, hl7verify
from labinterp.labwork.batch import interpret_batch, panel_loader

blp = Blueprint("labwork", __name__, url_prefix="/v1", description="Laboratory workflow: batches of panels, "
                "CSV files and HL7 v2 ORU^R01 messages, against the default data or a laboratory profile.")
PROBLEM = {"schema": schemas.ProblemOut, "content_type": "application/problem+json"}


# ------------------------------------------------------------------ documentation
# Each panel is validated on its own (a bad panel gets its own error in a 200 answer), so the
# document describes panels as objects; their shape is the /v1/interpret request plus "id".
BATCH_REQUEST = {
    "type": "object", "required": ["panels"], "additionalProperties": False,
    "properties": {"panels": {
        "type": "array", "minItems": 1,
        "description": "Panels, each a /v1/interpret request (schema Panel) plus a caller-chosen 'id' "
                       "(1-64 characters). At most LABINTERP_MAX_PANELS (413 beyond).",
        "items": {"type": "object", "example": {
            "id": "specimen-1", "patient": {"age_years": 54, "sex": "female"},
            "results": [{"analyte": "calcium", "value": 7.9, "unit": "mg/dL"},
                        {"analyte": "albumin", "value": 2.9, "unit": "g/dL"}]}}}},
}


class BatchItemOut(Schema):
    id = fields.String(allow_none=True)
    result = fields.Nested(schemas.InterpretationOut)
    error = fields.Nested(schemas.ProblemOut)


class BatchOut(Schema):
    panels = fields.List(fields.Nested(BatchItemOut))


class Hl7Query(schemas.Strict):
    lab = fields.String(validate=validate.Length(min=1, max=64),
                        metadata={"description": "Laboratory profile whose intervals and limits to use."})
    annotate = fields.Boolean(load_default=False, metadata={
        "description": "1: answer the message itself, with OBX-7 and OBX-8 filled where empty and an NTE saying so."})
    verify = fields.Boolean(load_default=False, metadata={
        "description": "1: verify the results as POST /v1/hl7/verify does (release or hold, with the reasons); "
                       "with annotate=1, an NTE per reason and OBX-11 R on held results."})


class Hl7ObservationOut(Schema):
    segment = fields.Integer()
    set_id = fields.String(allow_none=True)
    code = fields.String(allow_none=True)
    code_system = fields.String(allow_none=True, metadata={"description": "OBX-3.3 or 3.6 of the code read."})
    code_text = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    laboratory_range = fields.String(allow_none=True)
    laboratory_flag = fields.String(allow_none=True)
    flag_agrees = fields.Boolean()
    range_warning = fields.String()
    outcome = fields.String(metadata={"enum": ["interpreted", "not_interpreted", "skipped"]})
    reason = fields.String()
    result = fields.Nested(schemas.ResultOut)


class Hl7Out(Schema):
    message = fields.Dict()
    observations = fields.List(fields.Nested(Hl7ObservationOut))
    panels = fields.List(fields.Dict())
    warnings = fields.List(fields.Dict())
    data_version = fields.String()
    laboratory = fields.String(allow_none=True)
    disclaimer = fields.String()
    symptoms_note = fields.String()


def _services() -> Any:
    return current_app.extensions["labinterp"]


def _json(body: Any) -> Response:
    return Response(json.dumps(body, allow_nan=False), mimetype="application/json")


def _lab_problem(exc: InvalidInput) -> Response:
    errors = field_errors(exc.errors)
    return problem(422, "Unknown laboratory profile.", "unknown-lab", errors)


# ------------------------------------------------------------------------ batch
@blp.route("/interpret/batch", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": BATCH_REQUEST}}})
@blp.response(200, BatchOut)
@blp.alt_response(400, **PROBLEM, description="Malformed JSON or nesting too deep")
@blp.alt_response(413, **PROBLEM, description="Body larger than LABINTERP_MAX_BODY_BYTES or more panels than "
                  "LABINTERP_MAX_PANELS")
@blp.alt_response(415, **PROBLEM, description="Body is not JSON")
@blp.alt_response(422, **PROBLEM, description="The body is not {\"panels\": [...]}")
def interpret_batch_view() -> Response:
    """Interpret many panels at once.

    Each panel is a /v1/interpret request plus a caller-chosen `id`. The answer lists, in
    request order, `{"id", "result"}` (the /v1/interpret answer) or `{"id", "error"}` (a problem
    detail whose pointers start at `/panels/<index>`): one bad panel never fails the others.
    All panels are classified together, in one call per laboratory profile.
    """
    services = _services()
    settings = services.settings
    refused = check_json_request(request, settings["MAX_JSON_DEPTH"])
    if refused is not None:
        return refused  # type: ignore[no-any-return]
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        return problem(400, "The body is not valid JSON.", "malformed-json")
    if not isinstance(body, dict) or not isinstance(body.get("panels"), list) or set(body) != {"panels"}:
        return problem(422, "Send {\"panels\": [...]}: a list of /v1/interpret requests, each with an 'id'.",
                       "invalid-input", [{"pointer": "/panels", "reason": "required: a list of panels, and "
                                          "no other member", "code": "invalid"}])
    panels = body["panels"]
    not_objects = [i for i, p in enumerate(panels) if not isinstance(p, dict)]
    if not_objects:
        return problem(422, "Each panel must be an object: a /v1/interpret request plus 'id'.", "invalid-input",
                       [{"pointer": f"/panels/{i}", "reason": "must be an object", "code": "invalid"}
                        for i in not_objects[:20]])
    if not panels:
        return problem(422, "The batch has no panels.", "invalid-input",
                       [{"pointer": "/panels", "reason": "at least one panel is required", "code": "empty"}])
    limit = settings["MAX_PANELS"]
    if len(panels) > limit:
        return problem(413, f"At most {limit} panels per batch (got {len(panels)}).", "too-many-panels",
                       [{"pointer": "/panels", "reason": f"at most {limit} panels", "code": "too_many"}])
    return _json({"panels": interpret_batch(services.engine, panels, panel_loader(settings["MAX_RESULTS"]))})


# -------------------------------------------------------------------------- CSV
@blp.route("/interpret/csv", methods=["POST"])
@blp.arguments(schemas.LabQuery, location="query", as_kwargs=True)
@blp.doc(requestBody={"required": True, "content": {"text/csv": {"schema": {
    "type": "string", "description": f"Header row naming {', '.join(REQUIRED)} (and optionally "
    f"{', '.join(OPTIONAL)}), in any order; ',' or ';' delimited; UTF-8, with or without BOM."}}}})
@blp.response(200, description="The same rows, in order, with the columns canonical_value, canonical_unit, "
              "interval_low, interval_high, classification, flag, critical, ctcae_grade, warnings, error, "
              "interval_origin and interval_source appended; corrected calcium as extra rows after its panel.",
              content_type="text/csv", example="specimen_id,analyte,value,unit,canonical_value,...\r\n")
@uploads.documented(blp)
def interpret_csv(lab: str | None = None) -> Response:
    """Interpret a CSV file of results (streamed: memory does not grow with the file).

    Adjacent rows with the same specimen_id form one panel. Bad rows are kept, with their line
    number and the reason in `error`. Warning codes (and `pattern:<id>` for combined patterns)
    are joined with '|' in `warnings`; derived rows say `derived` there.
    """
    services = _services()
    wrong_type = unsupported_type()
    if wrong_type is not None:
        return wrong_type
    try:
        interpreter = ColumnarInterpreter(services.engine, lab)
    except InvalidInput as exc:
        return _lab_problem(exc)
    settings = services.settings
    spooled = received_csv(settings)
    if isinstance(spooled, Response):
        return spooled
    try:
        job = CsvJob(interpreter, spooled, limits=CsvLimits.of(settings))
    except CsvHeaderError as exc:
        spooled.close()
        return problem(422, str(exc), "bad-header", [{"pointer": "/header", "reason": str(exc), "code": "header"}])
    return Response(streamed(iter(job), spooled), mimetype="text/csv",
                    headers={"Content-Disposition": "inline; filename=interpreted.csv"})


# ----------------------------------------------------------------------- HL7 v2
@blp.route("/hl7", methods=["POST"])
@blp.arguments(Hl7Query, location="query", as_kwargs=True)
@blp.doc(requestBody={"required": True, "description": "Sent as application/hl7-v2 or text/plain (the "
                      "document lists text/plain only, the type its test tools can generate).",
                      "content": {"text/plain": {"schema": {
                          "type": "string", "description": "One ORU^R01 message; segments separated by CR, LF "
                                                           "or CRLF."}}}})
@blp.doc(responses={"200": {
    "description": "One entry per OBX (application/json); with annotate=1, the message itself "
                   "(application/hl7-v2) with OBX-7 and OBX-8 filled where empty and an NTE after each OBX changed",
    "content": {"application/json": {"schema": Hl7Out}, "application/hl7-v2": {"schema": {"type": "string"}}}}})
@blp.alt_response(413, **PROBLEM, description="Body larger than LABINTERP_MAX_BODY_BYTES, or more OBX segments "
                  "than LABINTERP_HL7_MAX_OBX")
@blp.alt_response(415, **PROBLEM, description="Body is not application/hl7-v2 or text/plain")
@blp.alt_response(422, **PROBLEM, description="The message does not parse: the problem names segment and field")
def interpret_hl7(lab: str | None = None, annotate: bool = False, verify: bool = False) -> Response:
    """Interpret the OBX segments of an HL7 v2 ORU^R01 message (HTTP only: no MLLP).

    OBX-3 must carry a LOINC code of an analyte; OBX-7 (the laboratory's range) is used before
    the profile's interval; OBX-8 is reported beside the service's flag; OBX-11 status D, W or X
    is skipped. Age comes from PID-7 at collection (OBR-7, else OBX-14); sex from PID-8.
    """
    services = _services()
    read = hl7request.read(services, lab)
    if isinstance(read, Response):
        return read
    message, interpretation = read
    if verify:
        return hl7verify.answer(services, message, interpretation, lab, annotate)
    if annotate:
        return Response(hl7.annotate(services.engine, interpretation, lab), mimetype="application/hl7-v2")
    return _json(interpretation.body)

