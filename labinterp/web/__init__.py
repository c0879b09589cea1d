"""labinterp door: the teaching page at `/`, a static page that calls only the public JSON API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response

STATIC = Path(__file__).resolve().parent / "static"
PAGE = (Path(__file__).resolve().parent / "templates" / "index.html").read_bytes()
# The page holds no inline script or style, so the strictest policy fits it. The ops door may
# set its own policy for every response; the page's own is only a default.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

blp = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/web/static")


@blp.get("/")
def page() -> Response:
    response = Response(PAGE, mimetype="text/html")
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def register(app: Flask, api: Any) -> None:
    """Serve the page and its assets. A plain Flask blueprint: HTML and static files are not
    part of the JSON API, so they stay out of /openapi.json (as /docs does)."""
    app.register_blueprint(blp)
