"""One error handler, one error shape: problem+json (FHIR paths render an OperationOutcome)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from labinterp.core.errors import InvalidInput
from labinterp.http.problems import field_errors, flatten_messages, problem

log = logging.getLogger("labinterp.errors")
# (path prefix, renderer(status, detail, code, errors, headers)): doors with their own error
# shape (FHIR: OperationOutcome) register here; everything else gets problem+json.
Renderer = Callable[[int, str, str | None, list[dict[str, str]] | None, dict[str, str]], Response]


def _renderer_for(app: Flask) -> Renderer:
    for prefix, renderer in app.extensions.get("labinterp_error_renderers", []):
        if request.path.startswith(prefix):
            return renderer  # type: ignore[no-any-return]
    return lambda status, detail, code, errors, headers: problem(status, detail, code, errors, headers)


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, answering every HTTP error as RFC 9457 problem+json."""

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        data: dict[str, Any] = getattr(error, "data", None) or {}
        headers = {k: v for k, v in (error.get_headers() or []) if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        errors = None
        detail = error.description or ""
        code = None
        if "messages" in data:
            messages = data["messages"]
            if isinstance(messages, dict) and len(messages) == 1 and next(iter(messages)) in (
                    "json", "query", "form", "headers", "files", "view_args"):
                messages = next(iter(messages.values()))
            if status == 400 and messages in (["Invalid JSON body."], {"_schema": ["Invalid JSON body."]}):
                detail, code = "The body is not valid JSON.", "malformed-json"
            else:
                errors = flatten_messages(messages)
                detail = "The request has invalid fields: " + ", ".join(
                    sorted({e["pointer"] or "/" for e in errors}))
                code = "invalid-input"
        return _renderer_for(self._app)(status, detail, code, errors, headers)


def register_error_handlers(app: Flask, api: ProblemApi) -> None:
    api._app = app

    @app.errorhandler(InvalidInput)
    def _invalid(error: InvalidInput) -> Response:
        errors = field_errors(error.errors)
        detail = "The request has invalid fields: " + ", ".join(sorted({e["pointer"] or "/" for e in errors}))
        return _renderer_for(app)(422, detail, "invalid-input", errors, {})

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return api.handle_http_exception(error)
        if isinstance(error, RecursionError):
            return _renderer_for(app)(400, "The JSON body is nested too deeply.", "too-deep", None, {})
        # The exception's type only: its message could quote the request.
        log.error("unexpected error", extra={"error_type": type(error).__name__, "path": request.path})
        return _renderer_for(app)(500, "The server could not process the request.", "internal", None, {})
