"""Structured JSON logs with a request id, and nothing a patient could be recognised by."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
from typing import Any

import orjson
from flask import Request, Response, g, has_request_context

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only when it is short and plain: anything else (a line break, a
# quotation, a long string that could carry an identifier) is replaced by a generated one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The extra fields a log line may carry: each is operational (no value, age, identifier or body).
# Anything else passed as `extra=` (a raw path, say) is dropped here, so a careless call cannot leak input.
EXTRA_FIELDS = ("event", "route", "method", "status", "duration_ms", "error_type", "api_keys", "cds_issuers",
                "reason")
# gunicorn messages that quote the request (its line, a header, the URI with its query): the
# message keeps its opening words only. At DEBUG gunicorn also logs each "METHOD /path".
_QUOTING_MESSAGES = ("Invalid request from", "Error handling request")
_REQUEST_LINE = re.compile(r"^[A-Z]{3,7} /")


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Exceptions keep their type and stack, never their message
    (a message such as "could not convert string to float: '...'" can quote the request)."""

    # the last second written and its text, one tuple so that threads see a matching pair
    _stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        line: dict[str, Any] = {
            "time": f"{stamp[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _without_request_text(record),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            line["request_id"] = request_id
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
            line["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return orjson.dumps(line, default=str).decode()


def _without_request_text(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.name.startswith("gunicorn"):
        for opening in _QUOTING_MESSAGES:
            if message.startswith(opening):
                return f"{opening} (details withheld: they can quote the request)"
        if _REQUEST_LINE.match(message):
            return message.split(" ", 1)[0] + " (path withheld: it can hold an identifier)"
    return message


def current_request_id() -> str | None:
    if has_request_context():
        return g.get("request_id")
    return None


def request_id_for(incoming: Request) -> str:
    sent = incoming.headers.get(REQUEST_ID_HEADER, "")
    return sent if _REQUEST_ID.match(sent) else os.urandom(16).hex()  # as random as uuid4, a third of the cost


def configure(level: str) -> None:
    """JSON lines on stderr for the 'labinterp' loggers, unless a deployer configured handlers."""
    logger = logging.getLogger("labinterp")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)


access_log = logging.getLogger("labinterp.access")


def route_of(incoming: Request) -> str:
    """The route template (/v1/interpret), never the raw path: a path can hold an identifier."""
    return incoming.url_rule.rule if incoming.url_rule is not None else "unmatched"


def log_request(route: str, response: Response, seconds: float, method: str, request_id: str | None) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    # makeRecord and handle are what Logger.info does, less the search of the stack for the caller's
    # file and line, which no access line shows: the same record, filters and handlers.
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, "(access log)", 0, "request", (), None, extra={
            "event": "request", "method": method, "route": route, "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3), "request_id": request_id}))

