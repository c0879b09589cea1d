"""labinterp door: labwork (registered by create_app)."""

from __future__ import annotations

from typing import Any


def register(app: Any, api: Any) -> None:
    """Attach this door's blueprints and hooks to the app (filled in by its issue)."""
