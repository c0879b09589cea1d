"""Issue 11 on /v1/hl7: invalid dates are no dates (defect 11); OBX per message are limited (defect 5)."""

from __future__ import annotations

import pytest

from labinterp.labwork import hl7
from tests.ops.helpers import make_app

HL7 = "application/hl7-v2"


def message(birth: str = "19700315", collected: str = "20261123073000", obx14: str = "", count: int = 1) -> bytes:
    obx = "".join(f"OBX|{i}|NM|2823-3^Potassium^LN||6.4|mmol/L|||||F|||{obx14}\r" for i in range(1, count + 1))
    return ("MSH|^~\\&|LIS|LAB|EHR|WARD|20261123083000||ORU^R01|M1|P|2.5.1\r"
            f"PID|1||P1||DOE^JANE||{birth}|F\r"
            f"OBR|1|O1|F1|24362-6^Panel^LN|||{collected}\r" + obx).encode()


def warning_codes(entries: list[dict]) -> list[str]:
    return [w["code"] for w in entries]


@pytest.mark.parametrize("birth", ["20261100", "20260015", "20260230", "1970031", "19700315250000", "2026ab01"])
def test_an_invalid_birth_date_is_no_date_with_a_warning(client, birth):
    response = client.post("/v1/hl7", data=message(birth=birth), content_type=HL7)
    assert response.status_code == 200
    body = response.get_json()
    (warning,) = [w for w in body["warnings"] if w["code"] == "invalid_date"]
    assert warning["text"].startswith(f"PID-7 '{birth}'")
    assert body["panels"][0]["age_days"] is None
    (obx,) = body["observations"]
    assert obx["outcome"] == "interpreted"
    assert {"invalid_date", "adult_interval_assumed"} <= set(warning_codes(obx["result"]["warnings"]))


def test_a_valid_birth_date_gives_an_age_and_no_date_warning(client):
    body = client.post("/v1/hl7", data=message(birth="20261101"), content_type=HL7).get_json()
    assert body["panels"][0]["age_days"] == pytest.approx(22.3125)
    assert "invalid_date" not in warning_codes(body["warnings"])
    assert "invalid_date" not in warning_codes(body["observations"][0]["result"]["warnings"])


def test_an_invalid_collection_time_falls_back_to_obx14_and_says_so(client):
    body = client.post("/v1/hl7", data=message(collected="20261132", obx14="20261123073000"),
                       content_type=HL7).get_json()
    assert [w["text"][:17] for w in body["warnings"]] == ["OBR-7 '20261132' "]
    assert body["panels"][0]["age_days"] == pytest.approx(20707.3125)


def test_parse_dtm_never_coerces_day_or_month_zero():
    segment = hl7.Segment(2, "PID", [])
    warnings: list[dict[str, str]] = []
    assert hl7.parse_dtm("20261100", segment, "PID-7", warnings) == (None, False)
    assert hl7.parse_dtm("202600", segment, "PID-7", warnings) == (None, False)
    assert hl7.parse_dtm("202611", segment, "PID-7", warnings)[1] is False  # month only: imprecise, not invalid
    assert len(warnings) == 2


def test_parse_dtm_keeps_the_offset_and_refuses_a_wrong_one():
    from datetime import UTC, datetime, timedelta, timezone

    segment = hl7.Segment(4, "OBR", [])
    warnings: list[dict[str, str]] = []
    moment, _ = hl7.parse_dtm("202603021000+0200", segment, "OBR-7", warnings)
    assert moment == datetime(2026, 3, 2, 8, tzinfo=UTC) and moment.utcoffset() == timedelta(hours=2)
    assert hl7.parse_dtm("202603021000-0530", segment, "OBR-7", warnings)[0].tzinfo == timezone(
        -timedelta(hours=5, minutes=30))
    assert hl7.parse_dtm("202603021000", segment, "OBR-7", warnings)[0].tzinfo is None  # read as UTC where needed
    assert not warnings
    assert hl7.parse_dtm("202603021000+2400", segment, "OBR-7", warnings) == (None, False)
    assert hl7.parse_dtm("202603021000+0160", segment, "OBR-7", warnings) == (None, False)
    assert len(warnings) == 2


def test_an_age_compares_the_calendar_dates_as_written(client):
    """A collection at 00:30+0200 on the first birthday is one year of age, not the day before (as UTC would be)."""
    body = client.post("/v1/hl7", data=message(birth="20251123", collected="202611230030+0200"),
                       content_type=HL7).get_json()
    assert body["panels"][0]["age_days"] == pytest.approx(365 + 0.5 / 24)


@pytest.fixture(scope="module")
def limited():  # type: ignore[no-untyped-def]
    return make_app(HL7_MAX_OBX=5).test_client()


def test_obx_up_to_the_limit_are_interpreted(limited):
    response = limited.post("/v1/hl7", data=message(count=5), content_type=HL7)
    assert response.status_code == 200 and len(response.get_json()["observations"]) == 5


def test_obx_beyond_the_limit_are_413_naming_the_first_past_it(limited):
    response = limited.post("/v1/hl7", data=message(count=6), content_type=HL7)
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"].endswith("too-many-results") and "at most 5 OBX" in body["detail"]
    assert body["errors"][0]["segment"] == 9  # MSH, PID, OBR, then the sixth OBX


def test_the_default_limit_is_1000(client):
    assert client.post("/v1/hl7", data=message(count=1000), content_type=HL7).status_code == 200
    assert client.post("/v1/hl7", data=message(count=1001), content_type=HL7).status_code == 413
