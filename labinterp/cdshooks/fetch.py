"""Fetch the prefetch an EHR left out from its own FHIR server (CDS Hooks 2.0, "FHIR resource access")."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labinterp.http.body import json_depth_exceeds

# OpenSSL's verify codes whose message names the host (X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH)
X509_HOSTNAME_MISMATCH, X509_IP_ADDRESS_MISMATCH = 62, 64
CONTEXT_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")
# RFC 6750 b64token: what may follow "Bearer " in a header (nothing that could start another header)
TOKEN_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
CHUNK = 65_536


class FetchRefused(Exception):
    """fhirAuthorization is malformed: a 400 naming the field (the request itself is wrong)."""

    def __init__(self, pointer: str, reason: str):
        super().__init__(reason)
        self.pointer = pointer
        self.reason = reason


class Unavailable(Exception):
    """The prefetch could not be fetched: a 412 naming the field and the reason (never the token)."""

    def __init__(self, reason: str, pointer: str = "/fhirServer"):
        super().__init__(reason)
        self.pointer = pointer
        self.reason = reason


@dataclass(frozen=True)
class FetchSettings:
    servers: tuple[str, ...]  # the FHIR base URLs the deployer allows ("*": any); empty: never fetch
    allow_http: bool
    timeout: float  # seconds for the whole fetch of one call: every connect, request and read
    max_bytes: int  # bytes read from the FHIR server for one call, all pages together
    max_pages: int
    max_depth: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> FetchSettings:
        servers = tuple(_normal(s) if s.strip() != "*" else "*"
                        for s in str(settings.get("CDS_FHIR_SERVERS") or "").split(",") if s.strip())
        return cls(servers, bool(settings.get("CDS_ALLOW_HTTP_FHIR_SERVER")), float(settings["CDS_FETCH_TIMEOUT"]),
                   int(settings["FHIR_MAX_BODY_BYTES"]), int(settings["CDS_FETCH_MAX_PAGES"]),
                   int(settings["MAX_JSON_DEPTH"]))


def _normal(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def bearer(authorization: Any) -> str | None:
    """The access token of fhirAuthorization (CDS Hooks 2.0: token_type "Bearer", access_token), None if absent."""
    if authorization is None:
        return None
    if not isinstance(authorization, dict):
        raise FetchRefused("/fhirAuthorization", "fhirAuthorization must be an object")
    if str(authorization.get("token_type", "")).lower() != "bearer":
        raise FetchRefused("/fhirAuthorization/token_type", "fhirAuthorization.token_type must be 'Bearer'")
    token = authorization.get("access_token")
    if not isinstance(token, str) or not TOKEN_CHARACTERS.match(token):
        raise FetchRefused("/fhirAuthorization/access_token",
                           "fhirAuthorization.access_token must be a bearer token (RFC 6750 characters)")
    return token


def fill(template: str, context: Mapping[str, Any]) -> str:
    """A prefetch template with each {{context.x}} replaced by the context's value, URL-encoded."""
    def value(match: re.Match[str]) -> str:
        found = context.get(match.group(1))
        if not isinstance(found, str) or not found:
            raise Unavailable(f"the prefetch template needs context.{match.group(1)}", f"/context/{match.group(1)}")
        return urllib.parse.quote(found, safe="")

    return CONTEXT_TOKEN.sub(value, template)


class Fetcher:
    """GETs on one FHIR server. The token goes to that origin only: redirects are never followed and a
    Bundle's next link on another origin (or outside the base path) is refused."""

    def __init__(self, fhir_server: Any, token: str | None, settings: FetchSettings):
        if not isinstance(fhir_server, str) or not fhir_server:
            raise Unavailable("a prefetch is absent and there is no fhirServer to fetch it from")
        if not settings.servers:
            raise Unavailable("a prefetch is absent and this service fetches from no FHIR server "
                              "(LABINTERP_CDS_FHIR_SERVERS is not set)")
        parts = urllib.parse.urlsplit(fhir_server)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password \
                or parts.query or parts.fragment:
            raise Unavailable("fhirServer must be an https URL of a FHIR base (no user, query or fragment)")
        if parts.scheme == "http" and not settings.allow_http:
            raise Unavailable("fhirServer must use https: the access token and patient data are never sent in "
                              "clear (a development server may be allowed with LABINTERP_CDS_ALLOW_HTTP_FHIR_SERVER)")
        if "*" not in settings.servers and _normal(fhir_server) not in settings.servers:
            raise Unavailable("fhirServer is not one of the FHIR servers this service may fetch from "
                              "(LABINTERP_CDS_FHIR_SERVERS)")
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise Unavailable("fhirServer has an invalid port") from None
        self.scheme, self.host = parts.scheme, parts.hostname
        self.base_path = parts.path.rstrip("/")
        self.token = token
        self.settings = settings
        self.deadline = time.monotonic() + settings.timeout
        self.budget = settings.max_bytes

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Unavailable(f"the FHIR server did not answer within {self.settings.timeout:g} s")
        return left

    def _same_origin(self, url: str) -> str:
        """The path and query of a URL on this server under its base, else Unavailable."""
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = -1
        if (parts.scheme, parts.hostname, port) != (self.scheme, self.host, self.port) \
                or not (parts.path + "/").startswith(self.base_path + "/"):
            raise Unavailable("the FHIR server's next page is on another server: not followed (the access token "
                              "is sent to fhirServer only)")
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def get(self, target: str, read: bool) -> dict[str, Any] | None:
        """The resource at `target` (a path under the base); None when a read finds nothing (404, 410)."""
        timeout = self._remaining()
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                                     context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"Accept": "application/fhir+json", "User-Agent": "labinterp-cds-hooks"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        watchdog: threading.Timer | None = None
        try:
            connection.connect()
            # socket timeouts bound each wait, not their sum: a server trickling its headers a byte at a time
            # would never trip them, so the socket is shut down at the deadline whatever it is doing
            watchdog = threading.Timer(self._remaining(), _shut, (connection.sock,))
            watchdog.daemon = True
            watchdog.start()
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            status = response.status
            if 300 <= status < 400:
                raise Unavailable(f"the FHIR server answered a redirect (HTTP {status}): not followed (the access "
                                  "token is sent to fhirServer only)")
            if status in (401, 403):
                raise Unavailable(f"the FHIR server refused access (HTTP {status})"
                                  + ("" if self.token else ": the request carried no fhirAuthorization"),
                                  "/fhirAuthorization")
            if read and status in (404, 410):
                return None
            if status != 200:
                raise Unavailable(f"the FHIR server answered HTTP {status}")
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.budget:
                raise Unavailable(self._too_large())
            data = self._read(response, connection)
        except ssl.SSLCertVerificationError as error:
            raise Unavailable(_certificate_refused(error)) from None
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            if isinstance(error, TimeoutError) or "timed out" in str(error) or time.monotonic() >= self.deadline:
                raise Unavailable(f"the FHIR server did not answer within {self.settings.timeout:g} s") from None
            raise Unavailable(f"the FHIR server could not be reached ({type(error).__name__})") from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            connection.close()
        return self._resource(data)

    def _too_large(self) -> str:
        return (f"the FHIR server's answer is larger than {self.settings.max_bytes} bytes "
                "(LABINTERP_FHIR_MAX_BODY_BYTES)")

    def _read(self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection) -> bytes:
        chunks: list[bytes] = []
        while True:
            if connection.sock is not None:
                connection.sock.settimeout(self._remaining())
            chunk = response.read1(min(CHUNK, self.budget + 1))
            if not chunk:
                self._remaining()  # an end forced by the watchdog is a timeout, not the whole answer
                return b"".join(chunks)
            self.budget -= len(chunk)
            if self.budget < 0:
                raise Unavailable(self._too_large())
            chunks.append(chunk)

    def _resource(self, data: bytes) -> dict[str, Any]:
        if json_depth_exceeds(data, self.settings.max_depth):
            raise Unavailable(f"the FHIR server's answer is nested more than {self.settings.max_depth} levels deep")
        try:
            resource = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise Unavailable("the FHIR server's answer is not JSON (not FHIR)") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise Unavailable("the FHIR server's answer is not a FHIR resource (no resourceType)")
        return resource

    def read(self, query: str) -> dict[str, Any] | None:
        return self.get(f"{self.base_path}/{query}", read=True)

    def search(self, query: str) -> dict[str, Any]:
        """A searchset Bundle with the entries of every page, up to the page limit."""
        bundle = self.get(f"{self.base_path}/{query}", read=False)
        assert bundle is not None
        if bundle.get("resourceType") != "Bundle":
            raise Unavailable(f"the FHIR server answered a search with a {str(bundle['resourceType'])[:40]}, "
                              "not a Bundle")
        entries = list(bundle.get("entry") or []) if isinstance(bundle.get("entry"), list) else []
        page = bundle
        for _ in range(self.settings.max_pages - 1):
            following = _next(page)
            if following is None:
                break
            page = self.get(self._same_origin(following), read=False) or {}
            if page.get("resourceType") != "Bundle":
                raise Unavailable("the FHIR server's next page is not a Bundle")
            if isinstance(page.get("entry"), list):
                entries.extend(page["entry"])
        merged = {k: v for k, v in bundle.items() if k not in ("entry", "link", "total")}
        if entries:
            merged["entry"] = entries
        return merged


def _certificate_refused(error: ssl.SSLCertVerificationError) -> str:
    """Why TLS verification refused the server, without its host (the reason is logged; no URL in logs)."""
    if error.verify_code in (X509_HOSTNAME_MISMATCH, X509_IP_ADDRESS_MISMATCH):
        return "the FHIR server's TLS certificate is not issued for fhirServer's host name: not trusted"
    return f"the FHIR server's TLS certificate is not trusted ({error.verify_message or 'verification failed'})"


def _shut(sock: socket.socket | None) -> None:
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the fetch ended in time


def _next(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]  # type: ignore[no-any-return]
    return None


def fetch(templates: Mapping[str, str], keys: list[str], body: Mapping[str, Any],
          settings: FetchSettings) -> dict[str, Any]:
    """The absent prefetch keys, read from the request's fhirServer with its fhirAuthorization."""
    fetcher = Fetcher(body.get("fhirServer"), None, settings)  # a server it may not ask: its token is moot
    fetcher.token = bearer(body.get("fhirAuthorization"))
    found: dict[str, Any] = {}
    for key in keys:
        # '|' of system|code is not a URL character: some servers (Tomcat's) refuse it raw
        query = urllib.parse.quote(fill(templates[key], body.get("context") or {}), safe="/?&=,:%")
        # a template with a query is a search (a Bundle); one without, a read (a resource or nothing)
        found[key] = fetcher.search(query) if "?" in query else fetcher.read(query)
    return found
