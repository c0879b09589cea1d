"""Write the OpenAPI document the code generates (`python -m labinterp.openapi > docs/openapi.json`)."""

from __future__ import annotations

import json
import sys
from typing import Any

# Generated with no API keys configured, so the committed document does not depend on a deployment.
CLEAN = {"API_KEYS": "", "API_KEYS_FILE": None, "LABS_DIR": None, "DATA_DIR": None, "TEACHING_PAGE": "on"}


def document() -> dict[str, Any]:
    from labinterp.app import create_app

    return create_app(CLEAN).test_client().get("/openapi.json").get_json()  # type: ignore[no-any-return]


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
