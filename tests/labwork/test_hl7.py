"""POST /v1/hl7: ORU^R01 in three line-ending styles, OBX rules, age at collection, annotation, errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from labinterp.labwork import hl7
from tests.labwork.conftest import FILES

HL7 = "application/hl7-v2"


def post(client, name: str, query: str = "", content_type: str = HL7):  # type: ignore[no-untyped-def]
    return client.post("/v1/hl7" + query, data=(FILES / name).read_bytes(), content_type=content_type)


def by_set_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["set_id"]: o for o in body["observations"]}


def test_the_three_line_endings_give_one_answer(client) -> None:  # type: ignore[no-untyped-def]
    answers = [post(client, f"oru_r01_{style}.hl7").get_json() for style in ("cr", "lf", "crlf")]
    assert answers[0] == answers[1] == answers[2]
    assert len(answers[0]["observations"]) == 10
    raw = {style: (FILES / f"oru_r01_{style}.hl7").read_bytes() for style in ("cr", "lf", "crlf")}
    assert b"\n" not in raw["cr"] and b"\r" not in raw["lf"] and raw["crlf"].count(b"\r\n") == 14


def test_each_obx_outcome(client) -> None:  # type: ignore[no-untyped-def]
    obx = by_set_id(post(client, "oru_r01_cr.hl7").get_json())
    assert {k: o["outcome"] for k, o in obx.items()} == {
        "1": "interpreted", "2": "interpreted", "3": "interpreted", "4": "interpreted",
        "5": "not_interpreted", "6": "not_interpreted", "7": "interpreted", "8": "skipped", "9": "skipped",
        "10": "interpreted"}
    assert obx["5"]["reason"] == "OBX-6: a unit is required"  # missing OBX-6
    assert obx["6"]["reason"].startswith("OBX-5: must be a finite number, not 'HEMOLYZED'")
    assert obx["8"]["reason"].startswith("OBX-11 status D")
    assert "not a LOINC code of an analyte" in obx["9"]["reason"]
    # repeated OBX for potassium: each interpreted on its own
    assert obx["1"]["result"]["input"]["value"] == 6.4 and obx["2"]["result"]["input"]["value"] == 5.9
    # "<0.5" is off scale low; SN ">^9.0" is off scale high
    assert obx["7"]["result"]["input"] == {"value": 0.5, "unit": "mmol/L", "comparator": "<"}
    assert obx["10"]["result"]["input"]["comparator"] == ">" and obx["10"]["result"]["flag"] == "HH"


def test_obx7_is_used_before_the_defaults_and_obx8_is_compared(client) -> None:  # type: ignore[no-untyped-def]
    obx = by_set_id(post(client, "oru_r01_cr.hl7").get_json())
    k1 = obx["1"]["result"]
    assert k1["reference_interval"]["origin"] == "result"
    assert k1["reference_interval"]["stated"] == {"low": 3.5, "high": 5.1, "unit": "mmol/L"}
    assert k1["critical_limits"]["origin"] == "default"  # the sent range replaces the interval only
    assert k1["flag"] == "HH" and obx["1"]["laboratory_flag"] == "H" and obx["1"]["flag_agrees"] is False
    assert obx["2"]["result"]["reference_interval"]["high"] == 5.1  # "3.5_5.1" read as 3.5 to 5.1
    assert obx["3"]["result"]["reference_interval"]["origin"] == "default"  # no OBX-7
    assert obx["4"]["flag_agrees"] is True


@pytest.mark.parametrize("text, bounds", [
    ("3.5-5.1", (3.5, 5.1)), ("3.5_5.1", (3.5, 5.1)), (" 3.5 - 5.1 ", (3.5, 5.1)), ("<=5", (None, 5.0)),
    (">=10", (10.0, None)), ("normal", None), ("5.1-", None), ("", None),
])
def test_range_strings(text: str, bounds: tuple[float | None, float | None] | None) -> None:
    assert hl7.parse_range(text) == bounds


def test_one_sided_ranges_keep_their_strictness() -> None:
    low, high = hl7.parse_range("<5")  # type: ignore[misc]
    assert low is None and high < 5.0 and high > 4.9999999
    low, high = hl7.parse_range(">10")  # type: ignore[misc]
    assert high is None and low > 10.0 and low < 10.0000001


def test_age_at_collection_from_pid7_and_obr7(client) -> None:  # type: ignore[no-untyped-def]
    body = post(client, "oru_r01_newborn.hl7").get_json()
    assert body["panels"][0]["age_days"] == 3.0  # born 2026-11-20 06:00, collected 2026-11-23 06:00
    result = body["observations"][0]["result"]
    assert result["reference_interval"]["applies_to"].startswith("birth to 7 days")  # Hunterdon "0-7 days"
    assert result["flag"] == "H"  # 6.0 mmol/L: high for a 3-day-old, not critical (newborn critical high 7.8)
    adult = by_set_id(post(client, "oru_r01_cr.hl7").get_json())["3"]["result"]
    assert "adult_interval_assumed" not in [w["code"] for w in adult["warnings"]]


def test_obx7_without_a_birth_date_says_the_adult_limits_were_assumed(client) -> None:  # type: ignore[no-untyped-def]
    message = ("MSH|^~\\&|A|B|C|D|20261123||ORU^R01|1|P|2.5\rPID|1||X||Y|||F\r"
               "OBX|1|NM|2823-3^K^LN||5.8|mmol/L|3.5-5.1||||F\rOBX|2|NM|2823-3^K^LN||5.8|mmol/L|||||F\r")
    body = client.post("/v1/hl7", data=message, content_type=HL7).get_json()
    with_range, without = (o["result"] for o in body["observations"])
    assert [w["code"] for w in with_range["warnings"]].count("adult_limits_assumed") == 1
    assert "adult_interval_assumed" not in [w["code"] for w in with_range["warnings"]]
    assert "adult_interval_assumed" in [w["code"] for w in without["warnings"]]


def test_hl7_gives_the_interpret_answer(client) -> None:  # type: ignore[no-untyped-def]
    body = post(client, "oru_r01_cr.hl7").get_json()
    age = (datetime(2026, 11, 23, 7, 30) - datetime(1970, 3, 15)).total_seconds() / 86400

    def sent(text: str, low: float, high: float) -> dict[str, Any]:
        return {"low": low, "high": high, "text": f"the laboratory's range '{text}' (OBX-7)"}

    request = {"patient": {"age_days": age, "sex": "female"}, "results": [
        {"id": "1", "analyte": "2823-3", "value": 6.4, "unit": "mmol/L",
         "reference_interval": sent("3.5-5.1", 3.5, 5.1)},
        {"id": "2", "analyte": "2823-3", "value": 5.9, "unit": "mmol/L",
         "reference_interval": sent("3.5_5.1", 3.5, 5.1)},
        {"id": "3", "analyte": "17861-6", "value": 7.9, "unit": "mg/dL"},
        {"id": "4", "analyte": "1751-7", "value": 2.9, "unit": "g/dL", "reference_interval": sent("3.5-5.2", 3.5, 5.2)},
        {"id": "7", "analyte": "2601-3", "value": 0.5, "unit": "mmol/L", "comparator": "<",
         "reference_interval": sent("0.7-1.0", 0.7, 1.0)},
        {"id": "10", "analyte": "2823-3", "value": 9.0, "unit": "mmol/L", "comparator": ">",
         "reference_interval": sent("3.5-5.1", 3.5, 5.1)},
    ]}
    single = client.post("/v1/interpret", json=request).get_json()
    interpreted = [o["result"] for o in body["observations"] if o["outcome"] == "interpreted"]
    # the one difference: HL7 names the coding system (OBX-3.3) of the code read, JSON does not
    for result in interpreted:
        assert result["basis"]["code"]["system"] == "LN"
        result["basis"]["code"]["system"] = None
    assert interpreted == single["results"]
    assert body["panels"][0]["derived"] == single["derived"] and single["derived"]
    assert body["panels"][0]["patterns"] == single["patterns"]


def test_annotate_fills_empty_obx7_and_obx8_with_a_note(client) -> None:  # type: ignore[no-untyped-def]
    response = post(client, "oru_r01_lf.hl7", "?annotate=1", content_type="text/plain")
    assert response.status_code == 200 and response.mimetype == HL7
    segments = response.get_data(as_text=True).split("\r")
    assert segments[-1] == "" and all("\n" not in s for s in segments)
    obx3 = next(s for s in segments if s.startswith("OBX|3|"))
    fields = obx3.split("|")
    assert fields[7] == "8.6-10" and fields[8] == "L"
    note = segments[segments.index(obx3) + 1]
    assert note.startswith("NTE|1|O|Added by labinterp") and "OBX-7" in note and "OBX-8" in note
    obx1 = next(s for s in segments if s.startswith("OBX|1|"))
    assert obx1.split("|")[7:9] == ["3.5-5.1", "H"]  # the laboratory's own values are never replaced
    after_obx1 = segments[segments.index(obx1) + 1]
    assert after_obx1 == "NTE|1|L|Specimen received at 08:00"
    assert not segments[segments.index(obx1) + 2].startswith("NTE")
    untouched = [s for s in segments if s.startswith(("MSH", "PID", "OBR", "OBX|5|", "OBX|6|", "OBX|8|", "OBX|9|"))]
    original = (FILES / "oru_r01_lf.hl7").read_text().split("\n")
    assert all(s in original for s in untouched)
    assert sum(s.startswith("NTE|") for s in segments) == 1 + 2  # the lab's own, then OBX 2 (flag) and 3


def test_without_annotate_the_answer_is_json(client) -> None:  # type: ignore[no-untyped-def]
    response = post(client, "oru_r01_crlf.hl7", "?annotate=0")
    assert response.status_code == 200 and response.mimetype == "application/json"


@pytest.mark.parametrize("message, field", [
    ("", "MSH"),
    ("PID|1||X\r", "MSH"),
    ("MSH|^~\\&|A|B|C|D|20261123||ADT^A01|1|P|2.5\r", "MSH-9"),
    ("MSH|^|A\r", "MSH-2"),
    ("MSH|^~\\&|A|B|C|D|20261123||ORU^R01|1|P|2.5\rMSH|^~\\&|A\r", "MSH"),
    ("MSH|^~\\&|A|B|C|D|20261123||ORU^R01|1|P|2.5\rOBX1|NM\r", "segment 2"),
    ("MSH|^~\\&|A|B|C|D|20261123||ORU^R01|1|P|2.5\rPID|1||X||Y||20200101|F\rOBR|1||||||20191231\r"
     "OBX|1|NM|2823-3^K^LN||4|mmol/L\r", "PID-7"),
])
def test_messages_that_do_not_parse_name_segment_and_field(  # type: ignore[no-untyped-def]
        client, message: str, field: str) -> None:
    response = client.post("/v1/hl7", data=message.encode(), content_type=HL7)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    error = response.get_json()["errors"][0]
    assert error["field"] == field and isinstance(error["segment"], int)


def test_wrong_media_type_is_415(client) -> None:  # type: ignore[no-untyped-def]
    assert post(client, "oru_r01_cr.hl7", content_type="application/json").status_code == 415


def test_laboratory_profile_by_query(lab_client) -> None:  # type: ignore[no-untyped-def]
    obx = by_set_id(post(lab_client, "oru_r01_cr.hl7", "?lab=example-lab").get_json())
    assert obx["3"]["result"]["reference_interval"]["origin"] == "default"  # the lab covers potassium only
    assert obx["1"]["result"]["critical_limits"]["origin"] == "laboratory"
    response = post(lab_client, "oru_r01_cr.hl7", "?lab=nowhere")
    assert response.status_code == 422 and response.get_json()["errors"][0]["code"] == "unknown_lab"
