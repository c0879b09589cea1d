"""OpenAPI documentation of the FHIR door (raw JSON Schema: FHIR is not a marshmallow shape).

The request schema documents the subset of FHIR R4 the service reads; anything it does not
list is still accepted when it is valid FHIR (the body is validated with fhir.resources R4B).
"""

from __future__ import annotations

from typing import Any

# FHIR primitive patterns (R4): string, code, id, uri.
STRING = {"type": "string", "pattern": "[ \\r\\n\\t\\S]"}
CODE = {"type": "string", "pattern": "^[^\\s]+( [^\\s]+)*$"}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
_URI = {"type": "string", "minLength": 1}
_DATE = {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False,
                           "minProperties": 1}
    if required:
        out["required"] = required
    return out


QUANTITY = _obj({"value": {"type": "number"}, "comparator": {"type": "string", "enum": ["<", "<=", ">=", ">"]},
                 "unit": STRING, "system": _URI, "code": CODE})
CODING = _obj({"system": _URI, "code": CODE, "display": STRING})
CODEABLE = _obj({"coding": {"type": "array", "items": CODING, "minItems": 1}, "text": STRING})
REFERENCE = _obj({"reference": STRING, "display": STRING})
RANGE = _obj({"low": QUANTITY, "high": QUANTITY, "type": CODEABLE, "text": STRING})
OBSERVATION = _obj({
    "resourceType": {"type": "string", "enum": ["Observation"]},
    "id": _ID,
    "status": {"type": "string", "enum": ["registered", "preliminary", "final", "amended", "corrected",
                                          "cancelled", "entered-in-error", "unknown"]},
    "code": CODEABLE,
    "subject": REFERENCE,
    "effectiveDateTime": _DATE,
    "valueQuantity": QUANTITY,
    "specimen": REFERENCE,
    "referenceRange": {"type": "array", "items": RANGE, "minItems": 1},
}, ["resourceType", "status", "code"])
PATIENT = _obj({
    "resourceType": {"type": "string", "enum": ["Patient"]},
    "id": _ID,
    "gender": {"type": "string", "enum": ["male", "female", "other", "unknown"]},
    "birthDate": _DATE,
}, ["resourceType"])
BUNDLE = _obj({
    "resourceType": {"type": "string", "enum": ["Bundle"]},
    "id": _ID,
    "type": {"type": "string", "enum": ["collection", "batch", "searchset", "transaction"]},
    "entry": {"type": "array", "minItems": 1, "items": _obj({
        "fullUrl": _URI, "resource": {"oneOf": [OBSERVATION, PATIENT]}})},
}, ["resourceType", "type"])

REQUEST_SCHEMA = {"oneOf": [OBSERVATION, BUNDLE],
                  "description": "An Observation, or a Bundle of Observations (with the Patient for age and sex). "
                                 "Shown: the elements the service reads; any valid FHIR R4 is accepted."}
RESOURCE_OUT = {"type": "object", "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string"}}}
BUNDLE_OUT = {"type": "object", "required": ["resourceType", "type", "entry"],
              "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
                             "type": {"type": "string", "enum": ["collection"]},
                             "entry": {"type": "array", "items": {"type": "object"}}}}
OUTCOME_OUT = {"type": "object", "required": ["resourceType", "issue"],
               "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                              "issue": {"type": "array", "items": {"type": "object"}}}}


def _fhir(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/fhir+json": {"schema": schema}}}


INTERPRET_DOC: dict[str, Any] = {
    "parameters": [{"name": "lab", "in": "query", "required": False, "schema": {"type": "string"},
                    "description": "Laboratory profile whose intervals, limits and local codes (codes.toml: "
                                   "Coding.system and code) to use."}],
    "requestBody": {"required": True, "content": {
        "application/fhir+json": {"schema": REQUEST_SCHEMA},
        "application/json": {"schema": REQUEST_SCHEMA},
    }},
    "responses": {
        "200": _fhir(BUNDLE_OUT, "A collection Bundle: the Observations with their interpretation, derived "
                                 "corrected calcium, and OperationOutcomes for what was not interpreted"),
        "400": _fhir(OUTCOME_OUT, "Malformed JSON or nesting too deep"),
        "413": _fhir(OUTCOME_OUT, "Body larger than LABINTERP_FHIR_MAX_BODY_BYTES (8 MiB by default)"),
        "415": _fhir(OUTCOME_OUT, "Body is not JSON"),
        "422": _fhir(OUTCOME_OUT, "Not FHIR, not an Observation or Bundle, not valid FHIR R4, or an unknown "
                                  "laboratory profile"),
    },
}
METADATA_DOC: dict[str, Any] = {"responses": {"200": _fhir(RESOURCE_OUT, "A FHIR resource")}}
