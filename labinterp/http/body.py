"""Request guards shared by the doors: body size however framed, media type and nesting depth."""

from __future__ import annotations

from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from labinterp.http.problems import problem

JSON_TYPES = ("application/json",)


class _AtMost(LimitedStream):
    """A body stream that raises 413 as soon as a byte beyond `most` arrives.

    Werkzeug's own limit on a stream without Content-Length (chunked) stops reading at the limit
    and returns what it has: the rest of the body is silently cut off. Reading one byte more
    tells a body of exactly `most` bytes from a longer one.
    """

    def __init__(self, stream: IO[bytes], most: int) -> None:
        super().__init__(stream, most + 1, is_max=True)
        self.most = most

    def readinto(self, b: bytearray) -> int | None:  # type: ignore[override]
        count = super().readinto(b)
        if self._pos > self.most:
            raise RequestEntityTooLarge(f"The body is larger than {self.most} bytes.")
        return count


class BoundedRequest(Request):
    """The app's request class: every door's body, Content-Length or chunked, is read through a
    stream that refuses (413) more than `max_content_length` bytes, never truncates."""

    @cached_property
    def stream(self) -> IO[bytes]:  # type: ignore[override]
        most = self.max_content_length
        if most is None or self.content_length is not None or "wsgi.input_terminated" not in self.environ:
            # Content-Length is checked against the limit by werkzeug before any byte is read.
            return get_input_stream(self.environ, max_content_length=most)
        return _AtMost(self.environ["wsgi.input"], most)


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
