"""Security headers on every response; no CORS here (the CDS Hooks door adds its own)."""

from __future__ import annotations

from flask import Response

from labinterp.ops.logs import REQUEST_ID_HEADER

# The page and /docs load everything from this origin; nothing may frame them.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


_OURS = frozenset(name.lower() for name in (*SECURITY_HEADERS, "Cache-Control", "Server", REQUEST_ID_HEADER))
_ALL = [*SECURITY_HEADERS.items(), ("Cache-Control", "no-store")]


def apply(response: Response, request_id: str) -> Response:
    """The request id (a value the ops layer made or checked: no line break can be in it) and the
    security headers."""
    listed = getattr(response.headers, "_list", None)
    if type(listed) is list and not any(name.lower() in _OURS for name, _ in listed):
        # The usual case, none of them set yet: appended as they are. Werkzeug's Headers keeps its
        # (name, value) pairs in `_list`; these values need none of the checks Headers.add makes
        # of a value from elsewhere (a line break), which cost more than the rest of the hook.
        listed.append((REQUEST_ID_HEADER, request_id))
        listed.extend(_ALL)
        return response
    response.headers[REQUEST_ID_HEADER] = request_id
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # Answers about patients must not sit in a shared cache; static assets set their own policy.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.pop("Server", None)
    return response
