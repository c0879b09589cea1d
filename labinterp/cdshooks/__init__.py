"""labinterp door: CDS Hooks 2.0 (registered by create_app).

`GET /cds-services` (discovery) and `POST /cds-services/labinterp-electrolytes` (patient-view cards),
with CORS, and EHR JWT verification when trusted issuers are configured (see auth.py).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("labinterp.cdshooks")


def register(app: Any, api: Any) -> None:
    """Load the JWT configuration (a bad one stops start-up), attach the blueprint."""
    from labinterp.cdshooks.auth import load_config
    from labinterp.cdshooks.views import blp

    config = load_config(app.extensions["labinterp"].settings)
    app.extensions["labinterp_cdshooks"] = config
    if config.enabled:
        log.info("CDS Hooks: EHR JWTs verified", extra={"event": "startup", "cds_issuers": len(config.issuers)})
    else:
        log.warning("CDS Hooks: NO trusted issuers configured: /cds-services accepts calls WITHOUT any "
                    "authentication (set LABINTERP_CDS_JWT_ISSUERS and LABINTERP_CDS_AUDIENCE)",
                    extra={"event": "startup"})
    api.register_blueprint(blp)
