"""Configuration: defaults, then LABINTERP_* environment variables, then the caller's mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# name: (default, type, description) -- the README's configuration table is built from this.
SETTINGS: dict[str, tuple[Any, type, str]] = {
    "DATA_DIR": (None, str, "Directory of the default reference data (default: the embedded reference_ranges/)."),
    "LABS_DIR": (None, str, "Directory holding one sub-directory per laboratory profile (none by default)."),
    "MAX_BODY_BYTES": (1_048_576, int, "Largest request body accepted, in bytes (413 beyond)."),
    "FHIR_MAX_BODY_BYTES": (8_388_608, int, "Largest body the FHIR door accepts, in bytes (413 beyond): a "
                            "whole patient Bundle (Synthea's are 1-4 MB) without raising MAX_BODY_BYTES elsewhere."),
    "MAX_JSON_DEPTH": (32, int, "Deepest JSON nesting accepted (400 beyond)."),
    "MAX_RESULTS": (200, int, "Most results accepted in one panel (422 beyond)."),
    "MAX_PANELS": (1000, int, "Most panels accepted in one batch request (413 beyond)."),
    "HL7_MAX_OBX": (1000, int, "Most OBX segments accepted in one HL7 message on /v1/hl7 (413 beyond)."),
    "CSV_MAX_BYTES": (268_435_456, int, "Largest CSV upload accepted by /v1/interpret/csv, in bytes."),
    "CSV_MAX_LINE_BYTES": (16_384, int, "Longest CSV line (so also field), in bytes: a longer header is refused "
                           "(422), a longer row is that row's error."),
    "CSV_MAX_COLUMNS": (1_000, int, "Most columns in a CSV header (422 beyond)."),
    "CSV_MAX_PANEL_ROWS": (200, int, "Most CSV rows in one panel (adjacent rows with one specimen_id): every row "
                           "of a longer panel is an error."),
    "CSV_SPOOL_DIR": (None, str, "Directory where CSV uploads are spooled before they are read (default: the "
                      "system's temporary directory)."),
    "CSV_SPOOL_BYTES": (None, int, "Bytes of spooled CSV uploads allowed at once in a worker process (default: "
                        "CSV_MAX_BYTES); an upload that would go beyond gets 507."),
    "CDS_FHIR_SERVERS": ("", str, "Comma-separated FHIR base URLs the CDS Hooks service may fetch an absent "
                         "prefetch from (the request's fhirServer must be one; '*': any). Unset: never fetches (412)."),
    "CDS_ALLOW_HTTP_FHIR_SERVER": (False, bool, "Development only: allow an http:// fhirServer (the access token "
                                   "then travels in clear). Default: https only."),
    "CDS_FETCH_TIMEOUT": (5.0, float, "Seconds the CDS Hooks service gives one call's whole fetch from fhirServer "
                          "(every connect and read; 412 beyond)."),
    "CDS_FETCH_MAX_PAGES": (5, int, "Most pages of a search Bundle fetched from fhirServer (next links)."),
    "ENV": ("production", str, "'production' or 'development'; debug mode is refused in production."),
    # Operations and security (labinterp/ops; see docs/operations.md).
    "API_KEYS": ("", str, "Comma-separated API keys; when set (or API_KEYS_FILE), /v1 and /fhir need one "
                 "(header X-API-Key or Authorization: Bearer). Unset: the service is open and says so at start."),
    "API_KEYS_FILE": (None, str, "File of API keys, one per line ('#' starts a comment); adds to API_KEYS."),
    "METRICS_ALLOW": ("127.0.0.1/32,::1/128", str, "Client networks (comma-separated CIDR) that may read "
                      "/metrics; others get 403."),
    "TEACHING_PAGE": ("on", str, "'off' removes the teaching page at / and its assets (404)."),
    "LOG_LEVEL": ("INFO", str, "Level of the JSON application log on stderr (DEBUG, INFO, WARNING, ERROR)."),
}


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {name: default for name, (default, _, _) in SETTINGS.items()}
    for name, (_, kind, _) in SETTINGS.items():
        raw = os.environ.get(f"LABINTERP_{name}")
        if raw is not None and raw != "":
            config[name] = kind(raw) if kind is not bool else raw.lower() in ("1", "true", "yes")
    if overrides:
        config.update(overrides)
    return config
