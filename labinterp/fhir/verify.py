"""The FHIR R4 door's verification: POST /fhir/Observation/$verify.

Earlier Observations of the same subject in the request are the previous results (only those
released become previous results, as in CSV files). The disposition of each Observation is a
`meta.tag` in the code system DISPOSITION_SYSTEM (`release` or `hold`), and each reason a `note`
(author "labinterp") giving the rule, the action, the text and the source; the Observation's
`status` is the sender's and is never changed. The summary OperationOutcome ends with the
counts of held and released Observations. `?lab=` names the laboratory profile, as for $interpret: its
intervals, codes and verification rules. A haemolysis index is read from an Observation coded with one of
the laboratory's index codes (rule.hemolysis.index_codes): it applies to the Observations of the same
Specimen (by reference), or, without a specimen, of the same subject and collection time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint

from labinterp.core.verification import PreviousResult, VerificationRules, specimen_index, utc, verify
from labinterp.fhir.views import fhir_response, interpreted_request
from labinterp.fhirio import openapi
from labinterp.fhirio.translate import Group, Translation, effective_text, hemolysis_indices
from labinterp.fhirio.writer import Writer
from labinterp.render.verify import text

DISPOSITION_SYSTEM = "tag:labinterp,2026:verification-disposition"
DISPLAY = {"release": "Release: no verification rule holds this result",
           "hold": "Hold: the laboratory must look at this result before release"}
EXTENSION = "labinterp_verification"

blp = Blueprint("fhir_verify", __name__, url_prefix="/fhir",
                description="FHIR R4: verification of Observations (release or hold, with the reasons).")

VERIFY_DOC: dict[str, Any] = {**openapi.INTERPRET_DOC, "responses": {
    **openapi.INTERPRET_DOC["responses"],
    "200": openapi._fhir(openapi.BUNDLE_OUT, "The $interpret Bundle; each interpreted Observation also carries "
                         f"a meta.tag ({DISPOSITION_SYSTEM}: release | hold) and a note per verification reason"),
}}


def moment(text_value: str | None) -> datetime | None:
    """The collection time of an Observation (effective[x]); a date alone is its midnight, UTC."""
    if not text_value:
        return None
    try:
        return utc(datetime.fromisoformat(text_value))
    except ValueError:
        return None


def verify_translation(translation: Translation, rules: VerificationRules) -> tuple[int, int]:
    """Verify every interpreted group, earliest first; tag and annotate its Observations in place.

    Returns (released, held) counts."""
    released = held = 0
    indices = hemolysis_indices(translation, rules.index_codes, rules.index_unit)
    history: dict[str, list[PreviousResult]] = {}
    timed = [(moment(_group_time(g)), i, g) for i, g in enumerate(translation.groups) if g.outcome is not None]
    # groups without a time keep their place after the timed ones: they cannot be ordered in time
    timed.sort(key=lambda t: (t[0] is None, t[0].timestamp() if t[0] else 0.0, t[1]))
    for when, _, group in timed:
        assert group.outcome is not None
        subject = group.key[0]
        live = [item for item in group.items if item.outcome is not None]
        previous = tuple(history.get(subject, [])) if subject else ()
        pv = verify(group.outcome, [when] * len(live),
                    [specimen_index(indices.get(item.position, ())) for item in live], previous, rules)
        for item, result, v in zip(live, group.outcome.results, pv.results, strict=True):
            resource = item.resource
            resource.setdefault("meta", {}).setdefault("tag", []).append(
                {"system": DISPOSITION_SYSTEM, "code": v.disposition, "display": DISPLAY[v.disposition]})
            for reason in v.reasons:
                source = rules.source_titles.get(reason.source, reason.source) if reason.source else None
                note = (f"Verification {'hold' if reason.holds else 'comment'} ({reason.code}, action "
                        f"{reason.action}): {text(rules, reason)}" + (f" (source: {source})" if source else ""))
                resource.setdefault("note", []).append({"authorString": "labinterp", "text": note})
            if v.disposition == "hold":
                held += 1
            else:
                released += 1
                if subject:
                    history.setdefault(subject, []).append(
                        PreviousResult(result.analyte, result.value, result.comparator, when))
    return released, held


def _group_time(group: Group) -> str | None:
    return effective_text(group.items[0].resource) if group.items else None


@blp.route("/Observation/$verify", methods=["POST"])
@blp.doc(**VERIFY_DOC)
def verify_observations() -> Response:
    """Verify FHIR Observations (operation $verify): release or hold, with the reasons.

    The $interpret answer, plus on each interpreted Observation a meta.tag with the disposition
    (system tag:labinterp,2026:verification-disposition, code release or hold) and a note per
    reason (rule, action, text, source). Earlier Observations of the same subject in the
    request are the previous results for the contamination and delta rules.
    """
    read = interpreted_request()
    if isinstance(read, Response):
        return read
    lab, knowledge, translation = read
    rules: VerificationRules = current_app.extensions[EXTENSION][lab]
    released, held = verify_translation(translation, rules)
    bundle = Writer(knowledge).bundle(translation)
    summary = bundle["entry"][-1]["resource"]
    summary["issue"].append({"severity": "information", "code": "informational",
                             "diagnostics": f"Verification (data version {rules.data_version}): {held} "
                                            f"Observation(s) held, {released} released."})
    return fhir_response(bundle)
