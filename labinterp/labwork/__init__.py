"""labinterp door: laboratory workflow (batches, CSV files, HL7 v2), registered by create_app."""

from __future__ import annotations

from typing import Any


def register(app: Any, api: Any) -> None:
    """Attach the laboratory workflow blueprint: /v1/interpret/batch, /v1/interpret/csv, /v1/hl7."""
    from labinterp.labwork.views import blp

    api.register_blueprint(blp)
