"""The packed v1 answer (rule-owned parts as their JSON text, written once per rule) writes the plain answer's bytes."""

from __future__ import annotations

import orjson

from labinterp.core import Panel, Patient, ResultInput, SentInterval
from labinterp.render import v1 as render

PANELS = [
    Panel((ResultInput("calcium", 7.9, "mg/dL"), ResultInput("albumin", 2.9, "g/dL"),
           ResultInput("magnesium", 0.55, "mmol/L"), ResultInput("potassium", 6.9, "mEq/L", comparator=">")),
          Patient(age_days=54 * 365.25, sex="female")),
    Panel((ResultInput("potassium", 6.1, "mmol/L", reference_interval=SentInterval(3.5, None)),
           ResultInput("ionized_calcium", 1.0, "mmol/L"), ResultInput("calcium", 25.0, "mg/dL")),
          Patient(age_days=10)),
    Panel((ResultInput("2823-3", 4.2, "mmol/L"), ResultInput("magnesium", 1.9, "mg/dL"))),
]


def test_packed_and_plain_answers_are_the_same_bytes(engine) -> None:
    for panel in PANELS:
        outcome = engine.interpret(panel)
        for _ in range(2):  # the second time from the remembered text
            packed = render.answer(outcome, packed=True)
            assert orjson.dumps(packed) == orjson.dumps(render.answer(outcome))
    # and the packed answer really holds written text, so this compares two ways of writing it
    assert any(isinstance(r["critical_limits"], orjson.Fragment) for r in packed["results"])


def test_the_packed_verify_answer_is_the_plain_ones_bytes(app) -> None:
    """POST /v1/verify answers packed (as /v1/interpret): every verification case gives the plain answer's bytes."""
    from labinterp.api.verify import VERIFY_SCHEMA, engine, rules
    from labinterp.core.verification import verify_request
    from labinterp.render import verify as render_verify
    from tests.verify.helpers import CASES

    client = app.test_client()
    for _, body, _, _ in CASES:
        answer = client.post("/v1/verify", json=body)
        assert answer.status_code == 200
        with app.app_context():  # the same request answered plain
            plain = orjson.dumps(render_verify.answer(verify_request(engine(), rules(), VERIFY_SCHEMA.load(body))))
        assert answer.data == plain
