"""Optional API keys: kept only as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Request

# Paths that need a key when keys are configured. /cds-services answers to the EHR's JWT (its own
# door); /healthz, /readyz, /metrics, the docs and the page carry no patient data.
PROTECTED_PREFIXES = ("/v1/", "/fhir/")
PROTECTED_EXACT = ("/v1", "/fhir")
# FHIR clients discover a server from its CapabilityStatement before they authenticate (SMART App
# Launch requires it open); it holds no patient data.
OPEN_EXACT = ("/fhir/metadata",)
KEY_HEADER = "X-API-Key"
MIN_KEY_LENGTH = 16


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured keys, as digests only. Empty means the service is open."""

    def __init__(self, keys: Iterable[str]):
        cleaned = [key.strip() for key in keys if key.strip()]
        short = sum(1 for key in cleaned if len(key) < MIN_KEY_LENGTH)
        if short:
            # The count only: a log or an exception must never quote a key.
            raise ValueError(f"{short} API key(s) shorter than {MIN_KEY_LENGTH} characters")
        self._digests = tuple(dict.fromkeys(_digest(key) for key in cleaned))

    def __len__(self) -> int:
        return len(self._digests)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ApiKeys:
        keys = str(settings.get("API_KEYS") or "").split(",")
        path = settings.get("API_KEYS_FILE")
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"LABINTERP_API_KEYS_FILE: cannot read {path} ({error.strerror})") from None
            keys += [line.split("#", 1)[0] for line in text.splitlines()]
        return cls(keys)

    def accepts(self, presented: str | None) -> bool:
        """True when `presented` matches a key. Every digest is compared, match or not."""
        if not presented:
            return False
        candidate = _digest(presented)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(candidate, digest)
        return found


def presented_key(request: Request) -> str | None:
    """The key from X-API-Key, else from Authorization: Bearer."""
    key = request.headers.get(KEY_HEADER)
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def is_protected(path: str) -> bool:
    if path in OPEN_EXACT:
        return False
    return path in PROTECTED_EXACT or path.startswith(PROTECTED_PREFIXES)
