"""A CSV upload as both file doors receive it (POST /v1/interpret/csv and POST /v1/verify/csv): the media
type checked, the body spooled to disk within the worker's budget, and the answer streamed back a block ahead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, TypeVar

from flask import Response, request
from flask_smorest import Blueprint
from werkzeug.exceptions import RequestEntityTooLarge

from labinterp.files.csvfile import ahead
from labinterp.http import schemas
from labinterp.http.problems import problem

CSV_TYPES = ("text/csv", "application/csv", "text/plain")
SPOOL_BLOCK = 1 << 20

log = logging.getLogger("labinterp.uploads")
View = TypeVar("View", bound=Callable[..., Any])
# what a CSV door answers besides its file, for its OpenAPI document
PROBLEMS = ((413, "Body larger than LABINTERP_CSV_MAX_BYTES"), (415, "Body is not text/csv"),
            (422, "Header row without the required columns, longer than LABINTERP_CSV_MAX_LINE_BYTES or with more "
                  "than LABINTERP_CSV_MAX_COLUMNS columns, or unknown profile"),
            (507, "No room to spool the upload (LABINTERP_CSV_SPOOL_BYTES or a full LABINTERP_CSV_SPOOL_DIR): try "
                  "again later"))


def documented(blp: Blueprint) -> Callable[[View], View]:
    """A CSV door's problems (PROBLEMS) in the OpenAPI document."""
    def decorate(view: View) -> View:
        for status, description in reversed(PROBLEMS):  # listed in this order, as decorators written above it
            view = blp.alt_response(status, schema=schemas.ProblemOut, content_type="application/problem+json",
                                    description=description)(view)
        return view
    return decorate


class SpoolFull(Exception):
    """No room to spool an upload: the worker's budget is spent, or the disk is full."""


class _Spool(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
    """A spooled upload that gives its bytes back to the worker's budget when closed."""

    reserved = 0

    def close(self) -> None:
        try:
            super().close()
        finally:
            _release(self.reserved)
            self.reserved = 0


_spool_lock = threading.Lock()
_spooled_bytes = 0  # bytes of uploads spooled in this worker process, until each is closed


def _reserve(size: int, budget: int) -> bool:
    global _spooled_bytes
    with _spool_lock:
        if _spooled_bytes + size > budget:
            return False
        _spooled_bytes += size
        return True


def _release(size: int) -> None:
    global _spooled_bytes
    with _spool_lock:
        _spooled_bytes -= size


def spool(stream: IO[bytes], limit: int, directory: str | None, budget: int) -> IO[bytes]:
    """The whole body on disk first (memory stays flat), so the answer can stream without waiting
    on a client that is still sending. Each block is reserved from the worker's spool budget before
    it is written (uploads at once must not fill the volume: on Kubernetes an emptyDir over its
    sizeLimit evicts the pod); a full disk is SpoolFull too. RequestEntityTooLarge: over the limit."""
    spooled = _Spool(max_size=SPOOL_BLOCK, dir=directory)
    try:
        size = 0
        while block := stream.read(SPOOL_BLOCK):
            size += len(block)
            if size > limit:
                raise RequestEntityTooLarge()
            if not _reserve(len(block), budget):
                raise SpoolFull("the uploads being received by this worker hold all of LABINTERP_CSV_SPOOL_BYTES")
            spooled.reserved += len(block)
            spooled.write(block)
        spooled.seek(0)  # flushes: a full disk may show only here
        return spooled  # type: ignore[return-value]
    except OSError as exc:
        with contextlib.suppress(OSError):  # closing flushes what did not fit either
            spooled.close()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpoolFull("the spool directory, LABINTERP_CSV_SPOOL_DIR, is full") from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            spooled.close()
        raise


def unsupported_type() -> Response | None:
    """The 415 problem when the request is not sent as CSV."""
    if request.mimetype in CSV_TYPES:
        return None
    return problem(415, f"Send the body as text/csv (got '{request.mimetype or 'none'}').", "unsupported-media-type")


def received_csv(settings: Mapping[str, Any]) -> IO[bytes] | Response:
    """The request's body spooled (the caller closes it), or the problem: 413 over LABINTERP_CSV_MAX_BYTES,
    507 when there is no room to spool it now."""
    limit = settings["CSV_MAX_BYTES"]
    # one byte over the limit is read, so that a body of exactly the limit is not refused and a
    # longer one (chunked too: no Content-Length) is refused, never cut
    request.max_content_length = limit + 1
    budget = settings["CSV_SPOOL_BYTES"] if settings["CSV_SPOOL_BYTES"] is not None else limit
    try:
        return spool(request.stream, limit, settings["CSV_SPOOL_DIR"], budget)
    except RequestEntityTooLarge:
        return problem(413, f"The CSV is larger than {limit} bytes (LABINTERP_CSV_MAX_BYTES).", "too-large")
    except SpoolFull as exc:
        return problem(507, f"No room to receive the CSV now ({exc}): try again later.", "spool-full",
                       headers={"Retry-After": "30"})


def streamed(blocks: Iterator[bytes], spooled: IO[bytes]) -> Iterator[bytes]:
    """The answer's blocks, each computed while the one before is sent; the spooled upload closed at the end. A
    failure once the headers are sent is logged by its type only, never the content."""
    try:
        yield from ahead(blocks)
    except Exception as exc:  # noqa: BLE001 - the headers are sent: logged and raised
        log.error("CSV stream failed", extra={"error_type": type(exc).__name__})
        raise
    finally:
        spooled.close()
