"""The verification door: POST /v1/verify (and /v1/verify/csv): may each result be released?"""

from __future__ import annotations

from flask import Response, current_app
from flask_smorest import Blueprint

from labinterp.core.engine import Engine
from labinterp.core.errors import InvalidInput
from labinterp.core.verification import VerificationInput, VerificationRules, verify_request
from labinterp.files import verifycsv
from labinterp.files.csvfile import CsvLimits
from labinterp.http import loading, schemas, uploads
from labinterp.http.problems import problem, too_many_results
from labinterp.http.responses import json_response
from labinterp.http.uploads import received_csv, streamed, unsupported_type
from labinterp.render import verify as render

blp = Blueprint("verify", __name__, url_prefix="/v1", description="Verification (autoverification): may each "
                "result be released to the clinician, or must the laboratory look first, and why.")
VERIFY_SCHEMA = schemas.VerifySchema()
PROBLEM = {"schema": schemas.ProblemOut, "content_type": "application/problem+json"}
EXTENSION = "labinterp_verification"


def engine() -> Engine:
    return current_app.extensions["labinterp"].engine  # type: ignore[no-any-return]


def rules() -> dict[str | None, VerificationRules]:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


@blp.route("/verify", methods=["POST"])
@loading.json_arguments(blp, VERIFY_SCHEMA, as_kwargs=False)
@loading.documentation_only
@blp.response(200, schemas.VerifyOut)
@blp.alt_response(400, **PROBLEM, description="Malformed JSON or nesting too deep")
@blp.alt_response(413, **PROBLEM, description="Body larger than configured")
@blp.alt_response(415, **PROBLEM, description="Body is not JSON")
@blp.alt_response(422, **PROBLEM, description="Invalid fields, each named by a JSON pointer")
def verify(body: VerificationInput) -> Response:
    """Interpret one panel and decide, per result, release or hold, with the reasons.

    The body is the /v1/interpret body plus, optionally, `collected_at` and `hemolysis_index`
    (on the panel or per result) and `previous` (earlier results of the same patient). The
    answer is the /v1/interpret answer plus, per result, `verification` {disposition, reasons}
    and the panel's `disposition` (hold when any result is held). Rules apply in the order of
    docs/verification.md; each reason names its action, its source and the numbers compared.
    """
    refused = too_many_results(len(body.panel.results), current_app.extensions["labinterp"].settings["MAX_RESULTS"])
    if refused is not None:
        return refused
    return json_response(render.answer(verify_request(engine(), rules(), body), packed=True))


# -------------------------------------------------------------------------- CSV


@blp.route("/verify/csv", methods=["POST"])
@blp.arguments(schemas.LabQuery, location="query", as_kwargs=True)
@blp.doc(requestBody={"required": True, "content": {"text/csv": {"schema": {
    "type": "string", "description": f"Header row naming {', '.join(verifycsv.REQUIRED)} (and optionally "
    f"{', '.join(verifycsv.OPTIONAL)}); ',' or ';' delimited (the answer keeps it); UTF-8, with or without "
    "BOM; read as POST /v1/interpret/csv reads a file."}}}})
@blp.response(200, description="The same rows, in order, with the columns disposition, verification_actions, "
              "verification_reasons, flag and error appended (a bad row's error begins with its line).",
              content_type="text/csv",
              example="specimen_id,analyte,value,unit,disposition,...\r\n")
@uploads.documented(blp)
def verify_csv(lab: str | None = None) -> Response:
    """Verify a CSV file of results (streamed; memory bounded by the number of patients).

    Adjacent rows with the same specimen_id form one specimen. Earlier rows of the same
    patient_id are that patient's previous results (rows of a patient in collection order, or
    with collected_at); only released results become previous results. Bad rows are kept with
    the reason in `error`.
    """
    services = current_app.extensions["labinterp"]
    wrong_type = unsupported_type()
    if wrong_type is not None:
        return wrong_type
    settings = services.settings
    spooled = received_csv(settings)
    if isinstance(spooled, Response):
        return spooled
    try:
        job = verifycsv.VerifyJob(engine(), rules(), lab, spooled, limits=CsvLimits.of(settings))
    except InvalidInput as exc:
        spooled.close()
        return problem(422, "Unknown laboratory profile.", "unknown-lab",
                       [{"pointer": "/lab", "reason": e.reason, "code": e.code} for e in exc.errors])
    except verifycsv.CsvHeaderError as exc:
        spooled.close()
        return problem(422, str(exc), "bad-header", [{"pointer": "/header", "reason": str(exc), "code": "header"}])
    return Response(streamed(iter(job), spooled), mimetype="text/csv",
                    headers={"Content-Disposition": "inline; filename=verified.csv"})
