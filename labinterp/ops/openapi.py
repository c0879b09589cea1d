"""With API keys on, the OpenAPI document declares them: the scheme, and a 401 on every protected path."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

from labinterp.ops import auth

SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": auth.KEY_HEADER},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "the same API key, as a bearer token"},
}
UNAUTHORIZED = {
    "/fhir": {"description": "Missing or unknown API key (OperationOutcome)",
              "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
    "": {"description": "Missing or unknown API key",
         "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}},
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def declare_keys(document: dict[str, Any]) -> dict[str, Any]:
    document.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES)
    for path, item in document.get("paths", {}).items():
        if not auth.is_protected(path):
            continue
        unauthorized = UNAUTHORIZED["/fhir"] if path.startswith("/fhir") else UNAUTHORIZED[""]
        for method in METHODS:
            if method in item:
                item[method]["security"] = [{"ApiKey": []}, {"Bearer": []}]
                item[method].setdefault("responses", {})["401"] = unauthorized
    return document


def with_keys_declared(response: Response) -> Response:
    document = declare_keys(json.loads(response.get_data()))
    response.set_data(json.dumps(document))
    return response
