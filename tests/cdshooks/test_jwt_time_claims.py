"""Defect 9 of issue 11: a trusted issuer's token whose time claims are not finite, sane numbers is a 401."""

from __future__ import annotations

import time

import pytest

from tests.cdshooks.test_cds_jwt import _refused, call, issuers_file, keys, secured, token  # noqa: F401

NOW = int(time.time())


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
    response = call(secured, token(keys["ec"], iat=NOW + 0.5, exp=NOW + 60.25, nbf=NOW - 1.0))
    assert response.status_code == 200, response.get_data(as_text=True)
