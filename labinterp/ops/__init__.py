"""labinterp door: operations and security (logs, metrics, health, readiness, API keys, headers)."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from flask import Flask, Response, abort, current_app, g, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from labinterp.core import Engine
from labinterp.http.responses import json_response
from labinterp.http.schemas import ProblemOut
from labinterp.ops import auth, headers, logs, metrics, openapi, readiness

log = logging.getLogger("labinterp.ops")
blp = Blueprint("ops", __name__, description="Liveness, readiness and metrics: open, without API keys "
                "(/metrics only to the configured client networks).")
PROBLEM = {"schema": ProblemOut, "content_type": "application/problem+json"}
TEACHING_PAGE_PREFIXES = ("/web/",)
OPENAPI_PATH = "/openapi.json"


class HealthOut(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class ReadyOut(Schema):
    status = fields.String(required=True, metadata={"description": "'ready' or 'not-ready'"})
    data_version = fields.String(required=True)
    laboratories = fields.List(fields.String(), required=True)
    reason = fields.String(allow_none=True)


@dataclasses.dataclass(frozen=True)
class Ops:
    keys: auth.ApiKeys
    metrics_networks: tuple[metrics.Network, ...]
    teaching_page: bool
    readiness: readiness.Readiness


def _ops() -> Ops:
    return current_app.extensions["labinterp_ops"]  # type: ignore[no-any-return]


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthOut)
def healthz() -> Response:
    """Alive: the process answers. Says nothing about the data (see /readyz)."""
    return json_response({"status": "ok"})


@blp.route("/readyz", methods=["GET"])
@blp.response(200, ReadyOut)
@blp.alt_response(503, schema=ReadyOut, description="Not ready: the reason names the data that failed")
def readyz() -> Response:
    """Ready: the reference data (and every laboratory profile) loaded, validated, and the engine
    read the midpoint of every adult default interval as normal at start-up."""
    state = _ops().readiness
    body = {"status": "ready" if state.ready else "not-ready", "data_version": state.data_version,
            "laboratories": list(state.laboratories), "reason": state.reason}
    return json_response(body, 200 if state.ready else 503)


@blp.route("/metrics", methods=["GET"])
@blp.response(200)
@blp.doc(responses={"200": {
    "description": "Prometheus text exposition (OpenMetrics when the Accept header asks for it)",
    "content": {media: {"schema": {"type": "string"}} for media in ("text/plain", "application/openmetrics-text")}}})
@blp.alt_response(403, **PROBLEM, description="Client address outside LABINTERP_METRICS_ALLOW")
def metrics_view() -> Response:
    """Prometheus metrics of this instance (all its workers)."""
    if not metrics.client_allowed(request.remote_addr, _ops().metrics_networks):
        raise Forbidden("Metrics are served only to the networks in LABINTERP_METRICS_ALLOW.")
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type)


def _before() -> None:
    # The request and g looked up once: every access through their proxies is a context look-up.
    incoming, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
    ctx.request_id = logs.request_id_for(incoming)
    ctx.started = time.perf_counter()
    ops = _ops()
    path = incoming.path
    if not ops.teaching_page and (path == "/" or path.startswith(TEACHING_PAGE_PREFIXES)):
        abort(404)
    if len(ops.keys) and auth.is_protected(path) and not ops.keys.accepts(auth.presented_key(incoming)):
        log.info("api key missing or not accepted", extra={"event": "auth-refused",
                                                           "route": logs.route_of(incoming)})
        raise Unauthorized(
            f"This endpoint needs an API key: send it in the {auth.KEY_HEADER} header "
            "(or as Authorization: Bearer).", www_authenticate=WWWAuthenticate("Bearer", {"realm": "labinterp"}))


def _after(response: Response) -> Response:
    incoming, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
    seconds = time.perf_counter() - ctx.get("started", time.perf_counter())
    route = logs.route_of(incoming)
    request_id = ctx.get("request_id") or logs.request_id_for(incoming)
    metrics.observe_request(route, incoming.method, response.status_code, seconds)
    logs.log_request(route, response, seconds, incoming.method, request_id)
    if incoming.path == OPENAPI_PATH and response.status_code == 200 and len(_ops().keys):
        openapi.with_keys_declared(response)
    return headers.apply(response, request_id)


def register(app: Flask, api: Any) -> None:
    """Logs, metrics, health and readiness routes, API keys and security headers.
    Registered first, so its hooks run before and after every other door's."""
    services = app.extensions["labinterp"]
    settings = services.settings
    logs.configure(str(settings.get("LOG_LEVEL") or "INFO"))
    state = readiness.check(services.engine)
    app.extensions["labinterp"] = dataclasses.replace(
        services, engine=Engine(services.engine.knowledge, observe=metrics.observe_tally))
    keys = auth.ApiKeys.from_settings(settings)
    app.extensions["labinterp_ops"] = Ops(
        keys=keys, metrics_networks=metrics.parse_networks(str(settings.get("METRICS_ALLOW") or "")),
        teaching_page=str(settings.get("TEACHING_PAGE", "on")).lower() not in ("off", "0", "false", "no"),
        readiness=state)
    app.before_request(_before)
    app.after_request(_after)
    api.register_blueprint(blp)
    if len(keys):
        log.info("API keys configured: /v1 and /fhir need a key", extra={"event": "startup", "api_keys": len(keys)})
    else:
        log.warning("No API keys configured: /v1 and /fhir are OPEN to every client that can reach this "
                    "service (set LABINTERP_API_KEYS or LABINTERP_API_KEYS_FILE)",
                    extra={"event": "startup", "api_keys": 0})
    if not state.ready:
        log.error("not ready: %s", state.reason, extra={"event": "startup", "reason": state.reason})
