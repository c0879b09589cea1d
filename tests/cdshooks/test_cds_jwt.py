"""CDS Hooks JWT bearer tokens, with keys generated here: ES384 and RS384 accepted, everything else refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from labinterp.app import create_app
from labinterp.cdshooks.auth import AuthError, load_config, verify
from tests.cdshooks.helpers import SERVICE, obs, request

AUDIENCE = "http://localhost/cds-services/labinterp-electrolytes"
EHR = "https://ehr.example.org"
OTHER_EHR = "https://other-ehr.example.org"


def _pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def keys():
    return {"ec": ec.generate_private_key(ec.SECP384R1()), "rsa": rsa.generate_private_key(65537, 2048),
            "other_ec": ec.generate_private_key(ec.SECP384R1())}


@pytest.fixture(scope="module")
def issuers_file(tmp_path_factory, keys):
    path = tmp_path_factory.mktemp("jwt") / "issuers.json"
    jwk = json.loads(ECAlgorithm.to_jwk(keys["other_ec"].public_key()))
    jwk["kid"] = "k-2026"
    path.write_text(json.dumps({EHR: {"jwks": {"keys": [json.loads(ECAlgorithm.to_jwk(keys["ec"].public_key())),
                                                        json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(
                                                            keys["rsa"].public_key()))]}},
                                OTHER_EHR: {"jwks": {"keys": [jwk]}}}))
    return path


@pytest.fixture(scope="module")
def secured(issuers_file):
    app = create_app({"TESTING": True, "CDS_JWT_ISSUERS": str(issuers_file), "CDS_AUDIENCE": AUDIENCE})
    return app.test_client()


def claims(**changes):
    now = int(time.time())
    out = {"iss": EHR, "aud": AUDIENCE, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def token(key, alg="ES384", headers=None, **changes):
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)


def call(client, bearer=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return client.post(SERVICE, json=request(obs("2823-3", 3.0, "mmol/L", id="k")), headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(alg: str, secret: bytes | None = None) -> str:
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims()).encode())
    signature = b"" if secret is None else hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha384).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _refused(response, words):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert words in response.get_json()["detail"]


def test_valid_es384_token(secured, keys):
    response = call(secured, token(keys["ec"]))
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_valid_rs384_token(secured, keys):
    assert call(secured, token(keys["rsa"], "RS384")).status_code == 200


def test_valid_token_chosen_by_kid(secured, keys):
    good = token(keys["other_ec"], headers={"kid": "k-2026"}, iss=OTHER_EHR)
    assert call(secured, good).status_code == 200
    _refused(call(secured, token(keys["other_ec"], headers={"kid": "k-1999"}, iss=OTHER_EHR)), "kid")


def test_no_token(secured):
    _refused(call(secured), "bearer token is required")


def test_expired_token(secured, keys):
    past = int(time.time()) - 3600
    _refused(call(secured, token(keys["ec"], iat=past - 60, exp=past)), "expired")


def test_wrong_audience(secured, keys):
    _refused(call(secured, token(keys["ec"], aud="https://somewhere-else.example/cds-services")), "audience")


def test_alg_none(secured):
    _refused(call(secured, _unsigned("none")), "algorithm 'none' is refused")


def test_hmac_token_signed_with_the_public_key(secured, keys):
    """The classic confusion attack: HS384 keyed with the issuer's public PEM."""
    _refused(call(secured, _unsigned("HS384", _pem(keys["ec"]).encode())), "algorithm 'HS384' is refused")
    _refused(call(secured, _unsigned("HS256", b"secret")), "algorithm 'HS256' is refused")


def test_wrong_key(secured, keys):
    _refused(call(secured, token(keys["other_ec"])), "signature")


def test_untrusted_issuer(secured, keys):
    _refused(call(secured, token(keys["ec"], iss="https://mallory.example")), "issuer is not trusted")


def test_replayed_jti(secured, keys):
    once = token(keys["ec"])
    assert call(secured, once).status_code == 200
    _refused(call(secured, once), "replay")


@pytest.mark.parametrize("claim", ["jti", "exp", "iat"])
def test_required_claims(secured, keys, claim):
    _refused(call(secured, token(keys["ec"], **{claim: None})), claim)


def test_exp_too_far_in_the_future(secured, keys):
    _refused(call(secured, token(keys["ec"], exp=int(time.time()) + 3600)), "in the future")


def test_discovery_and_preflight_need_no_token_calls_do(secured):
    assert secured.get("/cds-services").status_code == 200
    assert secured.options(SERVICE).status_code == 200
    assert secured.post(SERVICE, json=request()).status_code == 401


def test_replay_cache_is_bounded_by_exp(issuers_file, keys):
    config = load_config({"CDS_JWT_ISSUERS": str(issuers_file), "CDS_AUDIENCE": AUDIENCE})
    now = time.time()
    first = token(keys["ec"], exp=int(now) + 60)
    verify(config, f"Bearer {first}", now=now)
    assert len(config._seen) == 1
    with pytest.raises(AuthError):
        verify(config, f"Bearer {first}", now=now + 1)
    # once the first token's exp (plus leeway) has passed, its jti leaves the cache
    later = now + 200
    verify(config, f"Bearer {token(keys['ec'], iat=int(later), exp=int(later) + 60)}", now=later)
    assert len(config._seen) == 1


def test_configuration_errors_stop_start_up(tmp_path, keys):
    issuers = tmp_path / "issuers.toml"
    issuers.write_text(f'"{EHR}" = """{_pem(keys["ec"])}"""\n')
    assert load_config({"CDS_JWT_ISSUERS": str(issuers), "CDS_AUDIENCE": AUDIENCE}).enabled
    with pytest.raises(ValueError, match="CDS_AUDIENCE"):
        load_config({"CDS_JWT_ISSUERS": str(issuers)})
    private = tmp_path / "private.json"
    private.write_text(json.dumps({EHR: {"jwks": {"keys": [json.loads(ECAlgorithm.to_jwk(keys["ec"]))]}}}))
    with pytest.raises(ValueError, match="public keys only"):
        load_config({"CDS_JWT_ISSUERS": str(private), "CDS_AUDIENCE": AUDIENCE})
    assert not load_config({}).enabled


def test_replay_cache_under_concurrent_use(issuers_file, keys):
    """gthread workers share one cache per process: of 16 simultaneous uses of one token, one passes."""
    from concurrent.futures import ThreadPoolExecutor

    config = load_config({"CDS_JWT_ISSUERS": str(issuers_file), "CDS_AUDIENCE": AUDIENCE})
    once = f"Bearer {token(keys['ec'])}"

    def attempt(_):
        try:
            verify(config, once)
            return True
        except AuthError:
            return False

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    assert outcomes.count(True) == 1


# Issue 11, defect 9: a trusted issuer's token whose time claims are not finite, sane numbers is a 401.


@pytest.mark.parametrize("claim, value, words", [
    ("exp", float("nan"), "exp must be a finite number"),
    ("iat", float("nan"), "iat must be a finite number"),
    ("nbf", float("nan"), "nbf must be a finite number"),
    ("exp", float("inf"), "exp must be a finite number"),
    ("iat", float("-inf"), "iat must be a finite number"),
    ("exp", 10**400, "exp is out of range"),
    ("iat", -(10**400), "iat is out of range"),
    ("exp", 1e300, "exp is out of range"),
    ("iat", -5, "iat is out of range"),
])
def test_non_finite_or_out_of_range_time_claims_are_401(secured, keys, claim, value, words):
    _refused(call(secured, token(keys["ec"], **{claim: value})), words)


def test_sane_float_times_are_still_accepted(secured, keys):
    now = int(time.time())
    response = call(secured, token(keys["ec"], iat=now + 0.5, exp=now + 60.25, nbf=now - 1.0))
    assert response.status_code == 200, response.get_data(as_text=True)
