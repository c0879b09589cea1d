"""POST /v1/verify: the same dispositions as the engine, problem+json for bad input."""

from __future__ import annotations

import pytest

from labinterp.app import create_app
from tests.verify.helpers import CASES, LAB_CASES, k, make_labs


@pytest.fixture(scope="module")
def lab_client(tmp_path_factory):
    app = create_app({"TESTING": True, "LABS_DIR": str(make_labs(tmp_path_factory.mktemp("labs")))})
    return app.test_client()


def reason_codes(result):
    return [r["code"] for r in result["verification"]["reasons"]]


@pytest.mark.parametrize(("name", "body", "code", "disposition"), CASES, ids=[c[0] for c in CASES])
def test_default_rules_through_the_door(client, name, body, code, disposition):
    response = client.post("/v1/verify", json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    first = answer["results"][0]
    assert first["verification"]["disposition"] == disposition
    if code is not None:
        assert code in reason_codes(first)
    assert answer["disposition"] == ("hold" if any(r["verification"]["disposition"] == "hold"
                                                   for r in answer["results"]) else "release")


@pytest.mark.parametrize(("name", "body", "code", "disposition"), LAB_CASES, ids=[c[0] for c in LAB_CASES])
def test_laboratory_rules_through_the_door(lab_client, name, body, code, disposition):
    answer = lab_client.post("/v1/verify", json={**body, "lab": "testlab"}).get_json()
    first = answer["results"][0]
    assert first["verification"]["disposition"] == disposition
    if code is not None:
        assert code in reason_codes(first)
    assert answer["verification"]["rules_off"] == []


def test_the_answer_is_the_interpret_answer_plus_verification(client):
    body = {"results": [k(6.8), k(4.0)]}
    interpreted = client.post("/v1/interpret", json=body).get_json()
    verified = client.post("/v1/verify", json=body).get_json()
    for result in verified["results"]:
        assert result.pop("verification")["disposition"] in ("hold", "release")
    assert verified.pop("disposition") == "hold"
    meta = verified.pop("verification")
    assert {off["code"] for off in meta["rules_off"]} == {"measuring_range", "delta_check"}
    assert verified == interpreted


def test_a_reason_names_text_action_source_and_numbers(client):
    answer = client.post("/v1/verify", json={"results": [k(6.8)]}).get_json()
    (reason,) = answer["results"][0]["verification"]["reasons"]
    assert reason["code"] == "critical_value" and reason["action"] == "notify" and reason["holds"] is True
    assert reason["source"] and reason["source_id"] and reason["value"] == 6.8 and reason["limit"] == 6.2
    assert "6.8" in reason["text"] and "6.2" in reason["text"]


@pytest.mark.parametrize(("body", "pointer"), [
    ({"results": [k(4.0, hemolysis_index=-1)]}, "/results/0/hemolysis_index"),
    ({"results": [k(4.0, hemolysis_index="high")]}, "/results/0/hemolysis_index"),
    ({"results": [k(4.0)], "collected_at": "yesterday"}, "/collected_at"),
    ({"results": [k(4.0)], "previous": [{"analyte": "potassium", "value": 4}]}, "/previous/0/unit"),
    ({"results": [k(4.0)], "previous": [{"analyte": "sodium", "value": 4, "unit": "mmol/L"}]},
     "/previous/0/analyte"),
    ({"results": [k(4.0)], "previous": [{"analyte": "potassium", "value": 4, "unit": "m^9^9^9"}]},
     "/previous/0/unit"),
    ({"results": [k(4.0)], "previous": {"analyte": "potassium"}}, "/previous"),
    ({"results": [k(4.0)], "lab": "nowhere"}, "/lab"),
    ({"results": [k(4.0)], "extra": 1}, "/extra"),
])
def test_bad_input_is_problem_json_naming_the_field(client, body, pointer):
    response = client.post("/v1/verify", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert pointer in [e["pointer"] for e in response.get_json()["errors"]]


def test_not_json_is_refused(client):
    response = client.post("/v1/verify", data="results=1", content_type="text/plain")
    assert response.status_code == 415 and response.mimetype == "application/problem+json"
