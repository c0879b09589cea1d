"""Application factory: load and validate the data, build the engine, register the doors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from labinterp import __version__, cdshooks, fhir, labwork, ops, web
from labinterp.api import v1, verify
from labinterp.config import load_config
from labinterp.core import Engine, load_knowledge
from labinterp.core.units import dimension_table
from labinterp.core.verification_data import load_verification
from labinterp.fhir import verify as fhir_verify
from labinterp.history import from_settings as history_from_settings
from labinterp.http import docs
from labinterp.http.body import BoundedRequest
from labinterp.http.errors import ProblemApi, register_error_handlers
from labinterp.labwork import hl7verify

log = logging.getLogger("labinterp")


@dataclass(frozen=True)
class Services:
    engine: Engine
    settings: dict[str, Any]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. Bad reference data raises DataError naming file, entry and problem."""
    settings = load_config(config)
    if settings["ENV"] == "production" and settings.get("DEBUG"):
        raise RuntimeError("debug mode is refused in production configuration")
    knowledge = load_knowledge(settings["DATA_DIR"], settings["LABS_DIR"])
    verification = load_verification(knowledge)  # verification.toml (and each profile's), validated now
    dimension_table()  # built now: no request ever asks pint what a refused unit is
    app = Flask(__name__)
    app.request_class = BoundedRequest  # a chunked body over the limit is a 413, never cut short
    app.config.update(
        API_TITLE="labinterp",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings["MAX_BODY_BYTES"],
        API_SPEC_OPTIONS={"info": {"description": "Interpretation of serum calcium, magnesium and potassium "
                                   "results against sourced reference intervals. " + knowledge.disclaimer}},
        DEBUG=False,
        TESTING=bool(settings.get("TESTING", False)),
    )
    app.extensions["labinterp"] = Services(Engine(knowledge), settings)
    api = ProblemApi(app)
    register_error_handlers(app, api)
    api.register_blueprint(v1.blp)
    app.extensions[verify.EXTENSION] = verification
    api.register_blueprint(verify.blp)
    app.register_blueprint(docs.blp)
    # Each door registers its own routes and hooks; ops first, so its hooks wrap the rest.
    for door in (ops, labwork, fhir, cdshooks, web):
        door.register(app, api)
    api.register_blueprint(fhir_verify.blp)  # POST /fhir/Observation/$verify (errors: the FHIR door's renderer)
    api.register_blueprint(hl7verify.blp)  # POST /v1/hl7/verify
    app.extensions[hl7verify.HISTORY] = history_from_settings(settings)  # None: off (LABINTERP_HISTORY_URL)

    # /healthz, /readyz and /metrics are served by the ops door.
    log.info("labinterp %s started with data_version %s", __version__, knowledge.data_version)
    return app
