"""POST /v1/interpret/batch: many panels, answers in order, one bad panel never fails the others."""

from __future__ import annotations

from typing import Any

import pytest

from tests.labwork.test_columnar_same_answers import random_rows


def panel(pid: str, *results: tuple[str, Any, str], **extra: Any) -> dict[str, Any]:
    return {"id": pid, "results": [{"analyte": a, "value": v, "unit": u} for a, v, u in results], **extra}


def test_answers_in_request_order_with_errors_in_place(client) -> None:  # type: ignore[no-untyped-def]
    body = {"panels": [
        panel("p1", ("potassium", 6.5, "mmol/L")),
        panel("p2", ("sodium", 140, "mmol/L")),
        panel("p3", ("calcium", 7.9, "mg/dL"), ("albumin", 2.9, "g/dL"), patient={"age_years": 54}),
        {"id": "p4", "results": [], "colour": "red"},
        panel("p5", ("magnesium", "1.2", "mg/dL")),
    ]}
    response = client.post("/v1/interpret/batch", json=body)
    assert response.status_code == 200
    answers = response.get_json()["panels"]
    assert [a["id"] for a in answers] == ["p1", "p2", "p3", "p4", "p5"]
    assert [("result" in a, "error" in a) for a in answers] == [(True, False), (False, True), (True, False),
                                                                 (False, True), (False, True)]
    assert answers[0]["result"]["results"][0]["flag"] == "HH"
    assert answers[1]["error"]["status"] == 422
    assert answers[1]["error"]["errors"][0]["pointer"] == "/panels/1/results/0/analyte"
    assert {e["pointer"] for e in answers[3]["error"]["errors"]} == {"/panels/3/results", "/panels/3/colour"}
    assert answers[4]["error"]["errors"][0]["pointer"] == "/panels/4/results/0/value"  # a string is not a number
    assert len(answers[2]["result"]["derived"]) == 1  # corrected calcium, as in /v1/interpret


def test_batch_gives_the_interpret_answer_for_every_panel(client) -> None:  # type: ignore[no-untyped-def]
    rows = random_rows(11, 60)
    panels: list[dict[str, Any]] = []
    for row in rows:
        if not panels or panels[-1]["id"] != row["specimen_id"]:
            patient: dict[str, Any] = {}
            if row["age_years"]:
                patient["age_years"] = float(row["age_years"])
            if row["age_days"]:
                patient["age_days"] = float(row["age_days"])
            if row["sex"] in ("female", "male", "unknown"):
                patient["sex"] = row["sex"]
            panels.append({"id": row["specimen_id"], "results": [], "patient": patient})
        value, comparator = row["value"], None
        for c in ("<=", ">=", "<", ">"):
            if value.startswith(c):
                value, comparator = value[len(c):], c
                break
        try:
            number: Any = float(value)
        except ValueError:
            number = value
        result = {"analyte": row["analyte"], "value": number, "unit": row["unit"]}
        if comparator:
            result["comparator"] = comparator
        if row["specimen"]:
            result["specimen"] = row["specimen"]
        panels[-1]["results"].append(result)
    answers = client.post("/v1/interpret/batch", json={"panels": panels}).get_json()["panels"]
    compared = 0
    for p, answer in zip(panels, answers, strict=True):
        single = client.post("/v1/interpret", json={k: v for k, v in p.items() if k != "id"})
        if single.status_code == 200:
            assert answer == {"id": p["id"], "result": single.get_json()}
            compared += 1
        else:
            assert single.status_code == 422 and "error" in answer
            assert {e["pointer"] for e in answer["error"]["errors"]} == {
                f"/panels/{panels.index(p)}" + e["pointer"] for e in single.get_json()["errors"]}
    assert compared > 20


def test_the_comparison_would_see_a_difference(client) -> None:  # type: ignore[no-untyped-def]
    p = panel("x", ("potassium", 5.0, "mmol/L"))
    answer = client.post("/v1/interpret/batch", json={"panels": [p]}).get_json()["panels"][0]
    single = client.post("/v1/interpret", json={"results": p["results"], "patient": {"age_years": 1}}).get_json()
    assert answer["result"] != single  # another age, another interval: the equality above is not vacuous


def test_laboratory_profile_per_panel(lab_client) -> None:  # type: ignore[no-untyped-def]
    body = {"panels": [panel("default", ("potassium", 5.25, "mmol/L"), patient={"age_years": 50}),
                       panel("lab", ("potassium", 5.25, "mmol/L"), patient={"age_years": 50}, lab="example-lab"),
                       panel("nolab", ("potassium", 5.25, "mmol/L"), lab="no-such-lab")]}
    answers = lab_client.post("/v1/interpret/batch", json=body).get_json()["panels"]
    default, lab = answers[0]["result"], answers[1]["result"]
    assert default["results"][0]["flag"] == "H" and default["laboratory"] is None
    assert lab["results"][0]["flag"] == "N" and lab["laboratory"] == "example-lab"
    assert lab["results"][0]["reference_interval"]["origin"] == "laboratory"
    assert "Banner Health" in lab["results"][0]["reference_interval"]["source"]
    assert lab["results"][0]["critical_limits"]["origin"] == "laboratory"
    assert answers[2]["error"]["errors"][0]["code"] == "unknown_lab"


def test_more_panels_than_configured_is_413() -> None:
    from labinterp.app import create_app

    client = create_app({"TESTING": True, "MAX_PANELS": 3}).test_client()
    body = {"panels": [panel(str(i), ("potassium", 4, "mmol/L")) for i in range(4)]}
    response = client.post("/v1/interpret/batch", json=body)
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    body["panels"].pop()
    assert client.post("/v1/interpret/batch", json=body).status_code == 200


def test_body_larger_than_configured_is_413() -> None:
    from labinterp.app import create_app

    client = create_app({"TESTING": True, "MAX_BODY_BYTES": 2000}).test_client()
    body = {"panels": [panel(str(i), ("potassium", 4, "mmol/L")) for i in range(40)]}
    assert client.post("/v1/interpret/batch", json=body).status_code == 413
    assert client.post("/v1/interpret/batch", json={"panels": body["panels"][:5]}).status_code == 200


@pytest.mark.parametrize("body, status", [
    ({"panels": []}, 422),
    ({"panel": []}, 422),
    ({"panels": [{"id": "a", "results": []}], "extra": 1}, 422),
    ({"panels": [5]}, 422),
    ([], 422),
])
def test_envelope_errors(client, body, status) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/interpret/batch", json=body)
    assert response.status_code == status and response.mimetype == "application/problem+json"


def test_not_json_is_415_and_bad_json_400(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/v1/interpret/batch", data="x", content_type="text/plain").status_code == 415
    assert client.post("/v1/interpret/batch", data="{", content_type="application/json").status_code == 400
