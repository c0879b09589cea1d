"""API documentation page (Swagger UI served from the swagger-ui-bundle package: no CDN)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, Response, send_from_directory

blp = Blueprint("docs", __name__)
ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labinterp API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui'});\n"


@blp.route("/docs")
@blp.route("/docs/")
def page() -> Response:
    return Response(PAGE, mimetype="text/html")


@blp.route("/docs/init.js")
def init() -> Response:
    return Response(INIT, mimetype="text/javascript")


@blp.route("/docs/assets/<path:name>")
def assets(name: str) -> Response:
    return send_from_directory(ASSETS, name)
