"""Request guards shared by the JSON doors: media type and nesting depth."""

from __future__ import annotations

from flask import Request

from labinterp.http.problems import problem

JSON_TYPES = ("application/json",)


def is_json_type(mimetype: str) -> bool:
    return mimetype in JSON_TYPES or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when brackets nest deeper than `limit` (strings are skipped). Cheap when shallow."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def check_json_request(request: Request, max_depth: int):  # type: ignore[no-untyped-def]
    """None when acceptable, else the problem response to send."""
    if not is_json_type(request.mimetype):
        return problem(415, f"Send the body as application/json (got '{request.mimetype or 'none'}').",
                       "unsupported-media-type")
    if json_depth_exceeds(request.get_data(cache=True), max_depth):
        return problem(400, f"The JSON body is nested more than {max_depth} levels deep.", "too-deep")
    return None
