"""RFC 9457 problem details: the one error shape of the JSON doors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Response

from labinterp.core.errors import FieldError

PROBLEM_TYPE = "tag:labinterp,2026:problem/"
TITLES = {
    400: "Bad request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed",
    406: "Not acceptable", 413: "Request too large", 415: "Unsupported media type",
    422: "Invalid input", 429: "Too many requests", 500: "Internal error", 507: "Insufficient storage",
}


def problem_body(status: int, detail: str, code: str | None = None,
                 errors: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + (code or f"http-{status}"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = list(errors)
    return body


def problem(status: int, detail: str, code: str | None = None,
            errors: Iterable[Mapping[str, Any]] | None = None,
            headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps(problem_body(status, detail, code, errors)), status=status,
                        mimetype="application/problem+json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def too_many_results(count: int, limit: int) -> Response | None:
    """The answer to a panel of more results than LABINTERP_MAX_RESULTS allows (None: within it)."""
    if count <= limit:
        return None
    return problem(422, f"At most {limit} results per panel.", "too-many-results",
                   [{"pointer": "/results", "reason": f"at most {limit} results", "code": "too_many"}])


def field_errors(errors: Iterable[FieldError]) -> list[dict[str, str]]:
    return [{"pointer": e.pointer, "reason": e.reason, "code": e.code} for e in errors]


def flatten_messages(messages: Any, path: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """marshmallow's nested error dict -> [{pointer, reason}] with JSON pointers."""
    out: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":
                out.extend(flatten_messages(value, path))
            else:
                out.extend(flatten_messages(value, (*path, str(key))))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)
        for message in messages:
            code = "unknown_field" if message == "Unknown field." else (
                "missing" if message.startswith("Missing data") else "invalid")
            out.append({"pointer": pointer, "reason": message, "code": code})
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            out.extend(flatten_messages(value, (*path, str(index))))
    else:
        out.append({"pointer": "".join("/" + p for p in path), "reason": str(messages), "code": "invalid"})
    return out
