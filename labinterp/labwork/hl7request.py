"""Reading an HL7 v2 request body, shared by /v1/hl7 and /v1/hl7/verify: media type, decoding, parsing."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from labinterp.core.errors import InvalidInput
from labinterp.http.problems import field_errors, problem
from labinterp.labwork import hl7

HL7_TYPES = ("application/hl7-v2", "text/plain", "x-application/hl7-v2+er7")


def read(services: Any, lab: str | None) -> tuple[hl7.Message, hl7.Interpretation] | Response:
    """The parsed and interpreted message, or the problem to answer."""
    if request.mimetype not in HL7_TYPES:
        return problem(415, f"Send the message as application/hl7-v2 or text/plain (got "
                       f"'{request.mimetype or 'none'}').", "unsupported-media-type")
    data = request.get_data()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    try:
        message = hl7.parse(text, services.settings["HL7_MAX_OBX"])
        return message, hl7.interpret(services.engine, message, lab)
    except hl7.TooManyResults as exc:
        return problem(413, f"The message has too many results: {exc.reason}.", "too-many-results",
                       [{"pointer": "OBX", "segment": exc.segment, "field": "OBX", "reason": exc.reason,
                         "code": "too_many"}])
    except hl7.Hl7Error as exc:
        return problem(422, f"The message does not parse: {exc}", "hl7-parse",
                       [{"pointer": exc.field_name, "segment": exc.segment, "field": exc.field_name,
                         "reason": exc.reason, "code": "hl7"}])
    except InvalidInput as exc:
        return problem(422, "Unknown laboratory profile.", "unknown-lab", field_errors(exc.errors))
