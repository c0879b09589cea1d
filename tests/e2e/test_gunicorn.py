"""End-to-end: a real gunicorn with threaded workers on 127.0.0.1."""

from __future__ import annotations

import json
import random
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.server import gunicorn

pytestmark = pytest.mark.e2e

UNITS = {
    "calcium": ["mg/dL", "mmol/L", "mEq/L", "mg/L"],
    "ionized_calcium": ["mmol/L", "mg/dL"],
    "magnesium": ["mg/dL", "mmol/L", "mEq/L"],
    "potassium": ["mEq/L", "mmol/L", "mg/dL"],
}
# values in mmol/L spread around each analyte's interval and critical limits
CANONICAL = {"calcium": (1.4, 3.4), "ionized_calcium": (0.7, 1.7), "magnesium": (0.3, 2.2), "potassium": (2.3, 7.5)}
TO_UNIT = {"mg/dL": {"calcium": 4.0078, "ionized_calcium": 4.0078, "magnesium": 2.4305, "potassium": 3.9098},
           "mg/L": {"calcium": 40.078}, "mmol/L": None, "mEq/L": {"calcium": 2, "magnesium": 2, "potassium": 1}}


def make_panels(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    panels = []
    for _ in range(count):
        results = []
        for analyte, units in UNITS.items():
            unit = rng.choice(units)
            canonical = rng.uniform(*CANONICAL[analyte])
            factor = TO_UNIT[unit][analyte] if TO_UNIT[unit] else 1.0
            results.append({"analyte": analyte, "value": round(canonical * factor, 3), "unit": unit})
        panels.append({"results": results, "patient": {"age_years": rng.choice([30, 70])}})
    return panels


def post(base: str, body: dict) -> dict:
    request = urllib.request.Request(base + "/v1/interpret", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def summary(answer: dict) -> list[tuple]:
    return [(r["analyte"], r["value"]["value"], r["flag"], r["critical"],
             r["ctcae"] and r["ctcae"]["grade"]) for r in answer["results"]]


def test_threaded_workers_match_serial(client):
    """pint is not thread-safe: the service must give, under concurrency, exactly the serial numbers."""
    panels = make_panels(60)
    serial = [summary(client.post("/v1/interpret", json=p).get_json()) for p in panels]
    jobs = [i % len(panels) for i in range(600)]
    with gunicorn(workers=2, threads=8) as (base, _), ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: (i, summary(post(base, panels[i]))), jobs))
    mismatches = [(i, got) for i, got in answers if got != serial[i]]
    assert not mismatches, mismatches[:3]
    assert len(answers) == 600


def test_gunicorn_serves_the_contract_and_problems():
    with gunicorn(workers=1, threads=2) as (base, _):
        answer = post(base, {"results": [{"analyte": "potassium", "value": 6.4, "unit": "mEq/L"}]})
        assert answer["results"][0]["flag"] == "HH" and answer["results"][0]["critical"] is True
        request = urllib.request.Request(base + "/v1/interpret", data=b"{", method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback only
        assert caught.value.code == 400
        assert caught.value.headers["Content-Type"] == "application/problem+json"
