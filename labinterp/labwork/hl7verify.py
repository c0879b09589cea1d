"""Verification of HL7 v2 ORU^R01 messages: POST /v1/hl7/verify (the /v1/hl7 answer plus dispositions).

Each OBR group is a specimen; its collection time is OBR-7, else the first valid OBX-14; its haemolysis
index an OBX coded with one of the laboratory's index codes (rule.hemolysis.index_codes; the highest when
there are several), read on the rule's index scale. An HL7 message
carries no earlier results: with the result history configured (LABINTERP_HISTORY_URL, labinterp/history.py)
the patient's (PID-3) released results are kept and are the previous results of the next message;
without it the IV-fluid contamination and delta rules have nothing to compare with. With annotate=1 the
message comes back with, after each held or commented OBX (and its own NTEs), an NTE per reason, and OBX-11
set to R ("results entered, not verified", HL7 table 0085) on each held result; released results keep the
sender's OBX-11.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import fields, validate

from labinterp import __version__
from labinterp.core.outcomes import PanelOutcome
from labinterp.core.verification import (
    PanelVerification,
    PreviousResult,
    VerificationRules,
    index_problem,
    specimen_index,
    utc,
    verify,
)
from labinterp.history import History, Recorded
from labinterp.http import schemas
from labinterp.labwork import hl7, hl7request
from labinterp.render import verify as render

HELD_STATUS = "R"  # HL7 table 0085: results entered -- not verified
EXTENSION = "labinterp_verification"
HISTORY = "labinterp_history"
PROBLEM = {"schema": schemas.ProblemOut, "content_type": "application/problem+json"}

blp = Blueprint("hl7_verify", __name__, url_prefix="/v1", description="Verification of HL7 v2 ORU^R01 "
                "messages: release or hold per OBX, with the reasons.")


class Hl7VerifyQuery(schemas.Strict):
    lab = fields.String(validate=validate.Length(min=1, max=64),
                        metadata={"description": "Laboratory profile whose intervals, limits and rules to use."})
    annotate = fields.Boolean(load_default=False, metadata={
        "description": "Answer the message itself (application/hl7-v2): an NTE per reason after each held or "
                       "commented OBX, and OBX-11 = R on each held OBX."})


def collected(message: hl7.Message, obr: hl7.Segment | None, observations: list[hl7.Observation]) -> datetime | None:
    """The group's collection time as the interpret path reads it (hl7.group_collected), as an instant: with
    the offset the message states, else read as UTC."""
    moment = hl7.group_collected(message, obr, observations, [])
    return None if moment is None else utc(moment)


def hemolysis_index(message: hl7.Message, o: hl7.Observation, rules: VerificationRules) -> float | None:
    """The haemolysis index an OBX gives its OBR group, when OBX-3 is one of the laboratory's index codes
    (rule.hemolysis.index_codes; its entry then says so, or why it was not read); else None."""
    if o.outcome is not None or not any((system, code) in rules.index_codes
                                        for code, system in hl7.obx_codes(message, o.segment)):
        return None
    number, comparator, unit = hl7.obx_value(message, o.segment)
    o.entry["reason"] = "OBX-3 is the laboratory's haemolysis index code (rule.hemolysis.index_codes)"
    status = o.segment.get(11).strip().upper()
    found = index_problem(number, comparator is not None, unit, rules.index_unit)
    if status in hl7.SKIPPED_STATUS:
        problem = f"OBX-11 status {status}"
    elif found == "value":
        problem = "OBX-5 is not a number from 0 up"
    elif found == "unit":
        problem = f"OBX-6 unit '{unit[:20]}' is not the index's unit ({rules.index_unit})"
    else:
        o.entry["hemolysis_index"] = {"value": number, "unit": rules.index_unit}
        return float(number)
    o.entry["hemolysis_index_not_read"] = problem
    return None


def patient_id(message: hl7.Message) -> str | None:
    """PID-3's first identifier (CX.1, with its assigning authority CX.4 when given), or None."""
    pid = next((s for s in message.segments if s.name == "PID"), None)
    if pid is None:
        return None
    first = pid.get(3).split(message.repetition_sep)[0]
    parts = message.components(first)
    number = parts[0].strip()
    if not number:
        return None
    authority = parts[3].strip() if len(parts) > 3 else ""
    return f"{authority}|{number}"


def pv_time(interpretation: hl7.Interpretation, o: hl7.Observation) -> datetime | None:
    """The collection time of the observation's OBR group."""
    message = interpretation.message
    obr = None
    count = 0
    for s in message.segments:
        if s.name == "OBR":
            count += 1
            if count == o.obr:
                obr = s
    group = [x for x in interpretation.observations if x.obr == o.obr]
    return collected(message, obr, group)


def verify_interpretation(interpretation: hl7.Interpretation, rules: VerificationRules, k: Any,
                          previous: tuple[PreviousResult, ...] = (),
                          ) -> list[tuple[hl7.Observation, PanelVerification, int]]:
    """Verify each OBR group of an interpreted message; adds `verification` to each interpreted entry.

    `previous`: the patient's earlier results (from the history, when one is configured)."""
    message = interpretation.message
    obrs: dict[int, hl7.Segment] = {}
    count = 0
    for s in message.segments:
        if s.name == "OBR":
            count += 1
            obrs[count] = s
    by_group: dict[int, list[hl7.Observation]] = {}
    for o in interpretation.observations:
        by_group.setdefault(o.obr, []).append(o)
    out: list[tuple[hl7.Observation, PanelVerification, int]] = []
    panels = {p["obr"] or 0: p for p in interpretation.body["panels"]}
    for group, observations in by_group.items():
        # each index OBX says what it is, even in a group with nothing to verify
        index = specimen_index([x for x in (hemolysis_index(message, o, rules) for o in observations) if x is not None])
        live = [o for o in observations if o.outcome is not None]
        if not live:
            continue
        when = collected(message, obrs.get(group), observations)
        outcome = PanelOutcome(tuple(o.outcome for o in live if o.outcome is not None), (), (), k)
        pv = verify(outcome, [when] * len(live), [index] * len(live), previous, rules)
        for position, (o, v) in enumerate(zip(live, pv.results, strict=True)):
            o.entry["verification"] = render.verification(rules, v)
            out.append((o, pv, position))
        if group in panels:
            panels[group]["disposition"] = pv.disposition
    return out


Verified = list[tuple[hl7.Observation, PanelVerification, int]]


def annotated_message(interpretation: hl7.Interpretation, verified: Verified, rules: VerificationRules) -> str:
    message = interpretation.message
    added: dict[int, list[hl7.Segment]] = {}
    for o, pv, position in verified:
        v = pv.results[position]
        if not v.reasons:
            continue
        if v.disposition == "hold":
            o.segment.set(11, HELD_STATUS)
        anchor = o.notes[-1].number if o.notes else o.segment.number
        notes = added.setdefault(anchor, [])
        for reason in v.reasons:
            set_id = str(len(o.notes) + len(notes) + 1)
            text = (f"labinterp {__version__} verification {v.disposition.upper()} ({reason.code}, action "
                    f"{reason.action}): {render.text(rules, reason)}")
            notes.append(hl7.Segment(0, "NTE", ["NTE", set_id, "O", message.escape_text(text)]))
    segments = []
    for s in message.segments:
        segments.append(s)
        segments.extend(added.get(s.number, []))
    return hl7.Message(segments, message.field_sep, message.component_sep, message.repetition_sep,
                       message.escape, message.subcomponent_sep).render()


@blp.route("/hl7/verify", methods=["POST"])
@blp.arguments(Hl7VerifyQuery, location="query", as_kwargs=True)
@blp.doc(requestBody={"required": True, "content": {"text/plain": {"schema": {
    "type": "string", "description": "One ORU^R01 message; segments separated by CR, LF or CRLF."}}}})
@blp.doc(responses={"200": {
    "description": "The /v1/hl7 answer with `verification` on each interpreted observation, `disposition` on "
                   "each panel and on the message; with annotate=1, the message (application/hl7-v2) with an NTE "
                   "per reason and OBX-11 = R on held results",
    "content": {"application/json": {"schema": {"type": "object"}},
                "application/hl7-v2": {"schema": {"type": "string"}}}}})
@blp.alt_response(413, **PROBLEM, description="Body larger than allowed, or too many OBX segments")
@blp.alt_response(415, **PROBLEM, description="Body is not application/hl7-v2 or text/plain")
@blp.alt_response(422, **PROBLEM, description="The message does not parse, or an unknown laboratory profile")
def verify_hl7(lab: str | None = None, annotate: bool = False) -> Response:
    """Verify the OBX segments of an HL7 v2 ORU^R01 message: release or hold, with the reasons.

    Interpretation as POST /v1/hl7; the collection time is OBR-7, else OBX-14. A message carries
    no earlier results: the IV-fluid contamination and delta rules compare with nothing here.
    """
    services = current_app.extensions["labinterp"]
    read = hl7request.read(services, lab)
    if isinstance(read, Response):
        return read
    return answer(services, *read, lab, annotate)


def answer(services: Any, message: hl7.Message, interpretation: hl7.Interpretation, lab: str | None,
           annotate: bool) -> Response:
    """The verified answer to an interpreted message (JSON, or the annotated message)."""
    rules: VerificationRules = current_app.extensions[EXTENSION][lab]
    history: History | None = current_app.extensions.get(HISTORY)
    who = patient_id(message) if history is not None else None
    previous = history.previous(who) if history is not None and who else ()
    verified = verify_interpretation(interpretation, rules, services.engine.profile(lab), previous)
    if history is not None and who:
        history.record(who, [Recorded(o.outcome.analyte, o.outcome.value, o.outcome.comparator,
                                      pv_time(interpretation, o))
                             for o, pv, i in verified if pv.results[i].disposition == "release"
                             and o.outcome is not None])
    if annotate:
        return Response(annotated_message(interpretation, verified, rules), mimetype="application/hl7-v2")
    body = interpretation.body
    body["disposition"] = "hold" if any(pv.results[i].disposition == "hold" for _, pv, i in verified) else "release"
    body["verification"] = {"data_version": rules.data_version}
    return Response(json.dumps(body, allow_nan=False), mimetype="application/json")
