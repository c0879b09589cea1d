"""OpenAPI documentation of the CDS Hooks door (raw JSON Schema, following CDS Hooks 2.0)."""

from __future__ import annotations

from typing import Any

from labinterp.fhirio.openapi import BUNDLE, CODE, PATIENT, STRING

OPERATION_OUTCOME = {"type": "object", "additionalProperties": False, "minProperties": 1,
                     "required": ["resourceType", "issue"], "properties": {
                         "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                         "issue": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False, "required": ["severity", "code"],
                             "properties": {"severity": {"type": "string", "enum": ["fatal", "error", "warning",
                                                                                     "information"]},
                                            "code": CODE, "diagnostics": STRING}}}}}
_ID_STRING = {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
CALL_REQUEST = {
    "type": "object", "additionalProperties": False,
    "required": ["hook", "hookInstance", "context"],
    "properties": {
        "hook": {"type": "string", "enum": ["patient-view"]},
        "hookInstance": {"type": "string", "format": "uuid"},
        "fhirServer": {"type": "string", "description": "The EHR's FHIR base URL (https; http only with the "
                       "development override): an absent prefetch key is fetched from it, when the deployment "
                       "lists it in LABINTERP_CDS_FHIR_SERVERS."},
        "fhirAuthorization": {"type": "object", "description": "The bearer token for fhirServer (token_type "
                              "'Bearer', access_token), sent to that server only. Absent: the server is "
                              "taken to be open and asked without a token.",
                              "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                                             "expires_in": {"type": "integer"}, "scope": {"type": "string"},
                                             "subject": {"type": "string"}, "patient": {"type": "string"}}},
        "context": {"type": "object", "additionalProperties": False, "required": ["patientId"],
                    "properties": {"patientId": _ID_STRING, "userId": {"type": "string", "minLength": 1},
                                   "encounterId": {"type": "string", "minLength": 1}}},
        "prefetch": {"type": "object", "additionalProperties": False, "properties": {
            "patient": {"nullable": True, "oneOf": [PATIENT, OPERATION_OUTCOME]},
            "labs": {"nullable": True, "oneOf": [BUNDLE, OPERATION_OUTCOME]},
        }, "description": "Both keys are needed: a key left out is fetched from fhirServer (the discovery's "
                          "template) or, when it cannot be, the answer is 412. null, an empty searchset or an "
                          "OperationOutcome means no data."},
    },
}
CARD = {"type": "object", "required": ["summary", "indicator", "source"], "properties": {
    "uuid": {"type": "string"}, "summary": {"type": "string", "maxLength": 140},
    "indicator": {"type": "string", "enum": ["info", "warning", "critical"]}, "detail": {"type": "string"},
    "source": {"type": "object", "required": ["label"], "properties": {"label": {"type": "string"},
                                                                        "url": {"type": "string"}}}}}
CARDS = {"type": "object", "required": ["cards"], "properties": {"cards": {"type": "array", "items": CARD}}}
DISCOVERY = {"type": "object", "required": ["services"], "properties": {"services": {"type": "array", "items": {
    "type": "object", "required": ["hook", "id", "description"],
    "properties": {"hook": {"type": "string"}, "id": {"type": "string"}, "title": {"type": "string"},
                   "description": {"type": "string"}, "prefetch": {"type": "object"}}}}}}
PROBLEM = {"type": "object", "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                            "status": {"type": "integer"}, "detail": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


DISCOVERY_DOC: dict[str, Any] = {"responses": {"200": _json(DISCOVERY, "The CDS services offered")}}
CALL_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": CALL_REQUEST}}},
    "responses": {
        "200": _json(CARDS, "Cards: critical for LL/HH, warning for L/H and implausible values, none for normal"),
        "400": _problem("Malformed JSON, or a request that is not a CDS Hooks call of this hook"),
        "401": _problem("Bearer token missing or refused (when trusted issuers are configured)"),
        "404": _problem("No such CDS service"),
        "412": _problem("A prefetch the service needs (patient, labs) is absent and could not be fetched from "
                        "fhirServer (prefetch-unavailable: no or a refused fhirServer, not https, not allowed, "
                        "token refused, timeout, too large, not FHIR); errors[0].pointer names the field"),
        "413": _problem("Body larger than configured"),
        "415": _problem("Body is not JSON"),
    },
}
