"""labinterp door: FHIR R4 (registered by create_app).

`POST /fhir/Observation/$interpret` and `GET /fhir/metadata`; errors on /fhir paths are
rendered as OperationOutcome (application/fhir+json) through the app's error-renderer hook.
"""

from __future__ import annotations

from typing import Any


def register(app: Any, api: Any) -> None:
    """Attach the FHIR blueprint and the OperationOutcome error renderer for /fhir."""
    from labinterp.fhir.views import blp, render_error

    api.register_blueprint(blp)
    app.extensions.setdefault("labinterp_error_renderers", []).append(("/fhir", render_error))
