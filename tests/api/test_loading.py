"""The loader compiled from a marshmallow schema gives marshmallow's answers: the same object, or the same errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from labinterp.http import loading, schemas
from labinterp.http.loading import NotOnFastPath
from labinterp.labwork.batch import BatchPanelSchema

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6), st.booleans(),
                    st.sampled_from([0, 0.0, -0.0, 1e308, 10**400, "8.1", None]))
TEXTS = st.one_of(st.sampled_from(["calcium", "magnesium", "potassium", "albumin", "ionized_calcium", "17861-6",
                                   "mg/dL", "mmol/L", "mEq/L", "g/dL", "", "x" * 33, "serum", "plasma", "<", ">=",
                                   "female", "male", "unknown", "slight", "gross", "none", "L1"]),
                  st.text(max_size=4), st.integers(0, 3), st.none())


def maybe(d: dict[str, Any], draw: Any, key: str, strategy: Any) -> None:
    if draw(st.booleans()):
        d[key] = draw(strategy)


@st.composite
def results(draw: Any) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
    r: dict[str, Any] = {}
    for key, strategy in (("analyte", TEXTS), ("value", NUMBERS), ("unit", TEXTS)):
        if draw(st.integers(0, 9)) > 0:
            r[key] = draw(strategy)
    for key in ("id", "comparator", "specimen", "hemolysis"):
        maybe(r, draw, key, TEXTS)
    if draw(st.integers(0, 4)) == 0:
        r["reference_interval"] = draw(st.one_of(
            st.none(), st.integers(),
            st.fixed_dictionaries({}, optional={"low": NUMBERS, "high": NUMBERS, "unit": TEXTS, "text": TEXTS})))
    if draw(st.integers(0, 30)) == 0:
        r["unexpected"] = 1
    return r


@st.composite
def panels(draw: Any) -> Any:
    if draw(st.integers(0, 25)) == 0:
        return draw(st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2), st.text(max_size=3)))
    p: dict[str, Any] = {}
    if draw(st.integers(0, 12)) > 0:
        p["results"] = draw(st.one_of(st.lists(results(), max_size=4), st.none(), st.integers(), st.text(max_size=2)))
    if draw(st.booleans()):
        p["patient"] = draw(st.one_of(st.none(), st.fixed_dictionaries({}, optional={
            "age_years": NUMBERS, "age_days": NUMBERS, "sex": TEXTS})))
    maybe(p, draw, "specimen", TEXTS)
    maybe(p, draw, "lab", TEXTS)
    if draw(st.integers(0, 30)) == 0:
        p["extra"] = []
    return p


def outcome(load: Any, body: Any) -> Any:
    try:
        return "ok", load(body)
    except ValidationError as error:
        return "error", error.messages


def same(a: Any, b: Any) -> bool:
    """Equal, counting NaN equal to NaN (a refused NaN never gets this far; this keeps the check honest)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@pytest.mark.parametrize("schema", [schemas.PanelSchema(), schemas.PanelSchema(max_results=2),
                                    BatchPanelSchema(max_results=3), schemas.VerifySchema()],
                         ids=["v1", "max2", "batch", "verify"])
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=panels())
def test_compiled_panel_loader_answers_as_marshmallow(schema: Schema, body: Any) -> None:
    if isinstance(schema, BatchPanelSchema) and isinstance(body, dict) and body.get("extra") is None:
        body = {**body, "id": "p1"}
    if isinstance(schema, schemas.VerifySchema) and isinstance(body, dict) and isinstance(body.get("lab"), str):
        # the verification members, valid or not, keyed off a member the generator already varies
        body = {**body, "collected_at": body["lab"] or "2026-03-01T08:00:00Z", "hemolysis_index": len(body["lab"]),
                "previous": [{"analyte": "potassium", "value": 4.1, "unit": "mmol/L",
                              "collected_at": "2026-02-28T08:00:00+01:00"}]}
    expected = outcome(schema.load, body)
    got = outcome(loading.compile_schema(schema), body)
    assert got[0] == expected[0]
    assert same(got[1], expected[1])


def test_the_fast_path_is_taken_for_a_valid_body_and_left_for_an_invalid_one() -> None:
    verify = loading._compile(schemas.VerifySchema())  # the doors' schemas compile (else: marshmallow each time)
    body = {"results": [{"analyte": "potassium", "value": 5.1, "unit": "mmol/L", "hemolysis_index": 40}],
            "collected_at": "2026-03-01T08:00:00Z",
            "previous": [{"analyte": "potassium", "value": 4.1, "unit": "mmol/L", "collected_at": "2026-02-28"}]}
    assert verify(body) == schemas.VerifySchema().load(body)
    fast = loading._compile(schemas.PanelSchema())
    valid = {"results": [{"analyte": "calcium", "value": 8, "unit": "mg/dL",
                          "reference_interval": {"low": 8.5, "high": None}}],
             "patient": {"age_years": 54, "sex": "female"}}
    panel = fast(valid)
    assert panel == schemas.PanelSchema().load(valid)
    assert isinstance(panel.results[0].value, float)  # an int is loaded as marshmallow's Float loads it
    for invalid in ({"results": []}, {"results": [{"analyte": "calcium", "value": "8", "unit": "mg/dL"}]},
                    {"results": [{"analyte": "calcium", "value": 8, "unit": "mg/dL"}], "patient": {
                        "age_years": 1, "age_days": 2}}, {"results": [], "other": 1}):
        with pytest.raises(NotOnFastPath):
            fast(invalid)


def test_a_schema_with_features_it_was_not_built_for_is_left_to_marshmallow() -> None:
    class WithDefault(Schema):
        n = fields.Integer(load_default=3)

    with_default = WithDefault()
    assert loading.compile_schema(with_default) == with_default.load

    class Plain(Schema):
        n = fields.Integer(validate=validate.Range(min=1))

        @validates_schema
        def _check(self, data: dict[str, Any], **kwargs: Any) -> None:
            if data.get("n") == 7:
                raise ValidationError("not seven")

        @post_load
        def _make(self, data: dict[str, Any], **kwargs: Any) -> Any:
            return ("made", data.get("n"))

    plain = Plain()
    load = loading.compile_schema(plain)
    assert load != plain.load
    assert load({"n": 2}) == ("made", 2)
    with pytest.raises(ValidationError) as seven:
        load({"n": 7})
    assert seven.value.messages == {"_schema": ["not seven"]}
    with pytest.raises(ValidationError):
        load({"n": 0})


def test_the_interpret_door_answers_invalid_bodies_as_before(client: Any) -> None:
    bad = client.post("/v1/interpret", json={"results": [{"analyte": "calcium", "value": -1, "unit": "mg/dL"}]})
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["pointer"] == "/results/0/value"
    empty = client.post("/v1/interpret", data=b"", content_type="application/json")
    assert empty.status_code == 422 and empty.get_json()["errors"][0]["pointer"] == "/results"
    assert client.post("/v1/interpret", data=b" ", content_type="application/json").status_code == 400
    good = client.post("/v1/interpret", json={"results": [{"analyte": "calcium", "value": 8.1, "unit": "mg/dL"}]})
    assert good.status_code == 200 and good.get_json()["results"][0]["flag"] == "L"
