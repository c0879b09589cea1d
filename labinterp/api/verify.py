"""The verification door: POST /v1/verify (and /v1/verify/csv): may each result be released?"""

from __future__ import annotations

from flask import Response, current_app, request
from flask_smorest import Blueprint

from labinterp.core.engine import Engine
from labinterp.core.verification import VerificationInput, VerificationRules, verify_request
from labinterp.http import schemas
from labinterp.http.body import check_json_request
from labinterp.http.problems import problem
from labinterp.http.responses import json_response
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


@blp.before_request
def _guard() -> Response | None:
    if request.method == "POST" and request.path.rstrip("/").endswith("/verify"):
        return check_json_request(request, current_app.extensions["labinterp"].settings["MAX_JSON_DEPTH"])
    return None


@blp.route("/verify", methods=["POST"])
@blp.arguments(VERIFY_SCHEMA, as_kwargs=False)
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
    limit = current_app.extensions["labinterp"].settings["MAX_RESULTS"]
    if len(body.panel.results) > limit:
        return problem(422, f"At most {limit} results per panel.", "too-many-results",
                       [{"pointer": "/results", "reason": f"at most {limit} results", "code": "too_many"}])
    return json_response(render.answer(verify_request(engine(), rules(), body)))
