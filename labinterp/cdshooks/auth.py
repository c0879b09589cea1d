"""CDS Hooks 2.0 security: verify the EHR's signed JWT bearer token.

Configuration (read from the environment here, or from the app's settings mapping):

- `LABINTERP_CDS_JWT_ISSUERS`: path to a JSON or TOML file mapping each trusted issuer (`iss`) to its
  public key: a PEM string, or `{"pem": "..."}`, or `{"jwks": {"keys": [...]}}` (keys chosen by `kid`).
- `LABINTERP_CDS_AUDIENCE`: the audience (`aud`) tokens must carry: the URL(s) of this service's CDS
  endpoints as the EHR calls them, comma-separated. Required when issuers are configured.
- `LABINTERP_CDS_MAX_TOKEN_AGE`: most seconds a token's `exp` may lie in the future (default 300, the
  CDS Hooks limit of 5 minutes); also bounds the `jti` replay cache.

Only ES384 and RS384 are accepted (the CDS Hooks 2.0 algorithms); `none` and HMAC are refused before
any key is looked at. `iss`, `aud`, `exp`, `iat` and `jti` are required; a `jti` seen before (per issuer)
is refused until its token expires. The replay cache is in memory, per process (a multi-worker server
keeps one per worker: a replay landing on another worker is not caught; see docs/fhir-cds-hooks.md).

This JWT is the EHR proving itself to this service. The request's `fhirAuthorization` is another token, the
EHR's grant to its own FHIR server: fetch.py sends it there only, and never checks or logs it.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ALLOWED_ALGORITHMS = ("ES384", "RS384")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
LEEWAY_SECONDS = 30
LATEST_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


class AuthError(Exception):
    """The token is missing or refused; the message says why (never echoes the token)."""


@dataclass
class JwtConfig:
    issuers: dict[str, list[tuple[str | None, Any]]]  # iss -> [(kid, public key object)]
    audience: list[str]
    max_token_age: int = 300
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)


def _setting(settings: Mapping[str, Any], name: str) -> Any:
    value = settings.get(name)
    if value is None or value == "":
        value = os.environ.get(f"LABINTERP_{name}") or None
    return value


def _load_key(value: Any, issuer: str) -> list[tuple[str | None, Any]]:
    if isinstance(value, str):
        value = {"pem": value}
    if not isinstance(value, dict):
        raise ValueError(f"issuer '{issuer}': give a PEM string, {{'pem': ...}} or {{'jwks': ...}}")
    keys: list[tuple[str | None, Any]] = []
    if "pem" in value:
        keys.append((value.get("kid"), load_pem_public_key(str(value["pem"]).encode())))
    for jwk in (value.get("jwks") or {}).get("keys", []):
        kty = jwk.get("kty")
        if kty == "RSA":
            keys.append((jwk.get("kid"), RSAAlgorithm.from_jwk(json.dumps(jwk))))
        elif kty == "EC":
            keys.append((jwk.get("kid"), ECAlgorithm.from_jwk(json.dumps(jwk))))
        else:
            raise ValueError(f"issuer '{issuer}': JWKS key type '{kty}' is not accepted (RSA or EC only)")
    if not keys:
        raise ValueError(f"issuer '{issuer}': no public key")
    for _, key in keys:
        if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise ValueError(f"issuer '{issuer}': give RSA or EC public keys only")
    return keys


def load_config(settings: Mapping[str, Any]) -> JwtConfig:
    """Read the issuers file and audience; an unreadable or inconsistent configuration stops start-up."""
    path = _setting(settings, "CDS_JWT_ISSUERS")
    audience_raw = _setting(settings, "CDS_AUDIENCE")
    max_age = int(_setting(settings, "CDS_MAX_TOKEN_AGE") or 300)
    if not path:
        return JwtConfig({}, [], max_age)
    text = Path(str(path)).read_text(encoding="utf-8")
    data = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a mapping of issuer -> public key")
    issuers = {str(iss): _load_key(value, str(iss)) for iss, value in data.items()}
    audience = [a.strip() for a in str(audience_raw or "").split(",") if a.strip()]
    if not audience:
        raise ValueError("LABINTERP_CDS_AUDIENCE must be set when LABINTERP_CDS_JWT_ISSUERS is")
    return JwtConfig(issuers, audience, max_age)


def _seconds(name: str, value: Any) -> float:
    """A time claim as seconds since the epoch. NaN compares false with every time, so a NaN exp
    would never expire; 10**400 cannot be a float at all: both are refused, as is any time
    before the epoch or after year 9999."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthError(f"the token's {name} must be a number (seconds since the epoch)")
    if isinstance(value, int) and not 0 <= value <= LATEST_SECONDS:
        raise AuthError(f"the token's {name} is out of range")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise AuthError(f"the token's {name} must be a finite number")
    if not 0 <= seconds <= LATEST_SECONDS:
        raise AuthError(f"the token's {name} is out of range")
    return seconds


def verify(config: JwtConfig, authorization: str | None, now: float | None = None) -> dict[str, Any]:
    """The token's claims, or AuthError saying why it is refused."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("a bearer token is required (Authorization: Bearer <JWT>)")
    token = authorization[len("Bearer "):].strip()
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError("the bearer token is not a well-formed JWT") from None
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise AuthError(f"algorithm '{str(alg)[:10]}' is refused: use ES384 or RS384")
    issuer = unverified.get("iss")
    keys = config.issuers.get(issuer) if isinstance(issuer, str) else None
    if keys is None:
        raise AuthError("the token's issuer is not trusted")
    kid = header.get("kid")
    key_type = ec.EllipticCurvePublicKey if alg == "ES384" else rsa.RSAPublicKey
    candidates = [key for key_id, key in keys
                  if (kid is None or key_id is None or key_id == kid) and isinstance(key, key_type)]
    if not candidates:
        raise AuthError(f"no trusted {alg} key of this issuer matches the token's kid")
    now = time.time() if now is None else now
    claims: dict[str, Any] | None = None
    last_error = "the signature does not verify"
    for key in candidates:
        try:
            # times are checked below against `now`, one clock for expiry and the replay cache
            claims = jwt.decode(token, key, algorithms=[alg], audience=config.audience, issuer=issuer,
                                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
            break
        except jwt.InvalidAudienceError:
            raise AuthError("the token's audience is not this service") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(f"the token lacks the '{error.claim}' claim") from None
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, TypeError, ValueError) as error:
            last_error = f"the token is refused ({type(error).__name__})"
            continue
    if claims is None:
        raise AuthError(last_error)
    times = {name: _seconds(name, claims[name]) for name in ("exp", "iat", "nbf") if name in claims}
    exp = times["exp"]
    if exp + LEEWAY_SECONDS < now:
        raise AuthError("the token has expired")
    if times["iat"] - LEEWAY_SECONDS > now:
        raise AuthError("the token's iat is in the future")
    if "nbf" in times and times["nbf"] - LEEWAY_SECONDS > now:
        raise AuthError("the token is not valid yet (nbf)")
    if exp - now > config.max_token_age + LEEWAY_SECONDS:
        raise AuthError(f"the token's exp is more than {config.max_token_age} s in the future")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise AuthError("the token's jti must be a non-empty string")
    with config._lock:
        for key_seen, expiry in list(config._seen.items()):
            if expiry + LEEWAY_SECONDS < now:
                del config._seen[key_seen]
        if (issuer, jti) in config._seen:
            raise AuthError("the token's jti was already used (replay)")
        config._seen[(issuer, jti)] = exp
    return claims
