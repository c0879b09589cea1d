"""The verification door: POST /v1/verify (and /v1/verify/csv): may each result be released?"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from typing import IO

from flask import Response, current_app, request
from flask_smorest import Blueprint

from labinterp.core.engine import Engine
from labinterp.core.errors import InvalidInput
from labinterp.core.verification import VerificationInput, VerificationRules, verify_request
from labinterp.files import verifycsv
from labinterp.http import loading, schemas
from labinterp.http.problems import problem, too_many_results
from labinterp.http.responses import json_response
from labinterp.render import verify as render

blp = Blueprint("verify", __name__, url_prefix="/v1", description="Verification (autoverification): may each "
                "result be released to the clinician, or must the laboratory look first, and why.")
VERIFY_SCHEMA = schemas.VerifySchema()
PROBLEM = {"schema": schemas.ProblemOut, "content_type": "application/problem+json"}
EXTENSION = "labinterp_verification"
log = logging.getLogger("labinterp.verify")


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
    return json_response(render.answer(verify_request(engine(), rules(), body)))


# -------------------------------------------------------------------------- CSV
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
SPOOL_BLOCK = 1 << 20


@blp.route("/verify/csv", methods=["POST"])
@blp.arguments(schemas.LabQuery, location="query", as_kwargs=True)
@blp.doc(requestBody={"required": True, "content": {"text/csv": {"schema": {
    "type": "string", "description": f"Header row naming {', '.join(verifycsv.REQUIRED)} (and optionally "
    f"{', '.join(verifycsv.OPTIONAL)}); ',' or ';' delimited; UTF-8, with or without BOM."}}}})
@blp.response(200, description="The same rows, in order, with the columns disposition, verification_actions, "
              "verification_reasons, flag and error appended.", content_type="text/csv",
              example="specimen_id,analyte,value,unit,disposition,...\r\n")
@blp.alt_response(413, **PROBLEM, description="Body larger than LABINTERP_CSV_MAX_BYTES")
@blp.alt_response(415, **PROBLEM, description="Body is not text/csv")
@blp.alt_response(422, **PROBLEM, description="Header row without the required columns, or unknown profile")
def verify_csv(lab: str | None = None) -> Response:
    """Verify a CSV file of results (streamed; memory bounded by the number of patients).

    Adjacent rows with the same specimen_id form one specimen. Earlier rows of the same
    patient_id are that patient's previous results (rows of a patient in collection order, or
    with collected_at); only released results become previous results. Bad rows are kept with
    the reason in `error`.
    """
    services = current_app.extensions["labinterp"]
    if request.mimetype not in CSV_TYPES:
        return problem(415, f"Send the body as text/csv (got '{request.mimetype or 'none'}').",
                       "unsupported-media-type")
    limit = services.settings["CSV_MAX_BYTES"]
    request.max_content_length = limit
    spooled = _spool(request.stream, limit)
    if spooled is None:
        return problem(413, f"The CSV is larger than {limit} bytes.", "too-large")
    try:
        job = verifycsv.VerifyJob(engine(), rules(), lab, spooled)
    except InvalidInput as exc:
        spooled.close()
        return problem(422, "Unknown laboratory profile.", "unknown-lab",
                       [{"pointer": "/lab", "reason": e.reason, "code": e.code} for e in exc.errors])
    except verifycsv.CsvHeaderError as exc:
        spooled.close()
        return problem(422, str(exc), "bad-header", [{"pointer": "/header", "reason": str(exc), "code": "header"}])
    return Response(_stream(job, spooled), mimetype="text/csv",
                    headers={"Content-Disposition": "inline; filename=verified.csv"})


def _spool(stream: IO[bytes], limit: int) -> IO[bytes] | None:
    """The whole body on disk first, so the answer can stream without waiting on the client."""
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_BLOCK)  # noqa: SIM115 - closed by _stream
    size = 0
    while True:
        block = stream.read(SPOOL_BLOCK)
        if not block:
            break
        size += len(block)
        if size > limit:
            spooled.close()
            return None
        spooled.write(block)
    spooled.seek(0)
    return spooled  # type: ignore[return-value]


def _stream(job: verifycsv.VerifyJob, spooled: IO[bytes]) -> Iterator[bytes]:
    try:
        yield from job
    except Exception as exc:  # noqa: BLE001 - headers are sent: log the type only, never the content
        log.error("verify CSV stream failed", extra={"error_type": type(exc).__name__})
        raise
    finally:
        spooled.close()
