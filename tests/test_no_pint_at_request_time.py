"""Defect 1 of issue 11: `m^9^9^9` (and its HL7 spellings) on every door is refused with pint's parser
out of reach: any call into pint while a request is served is recorded and fails the test."""

from __future__ import annotations

import csv
import io

import pint
import pytest

from tests.cdshooks.helpers import SERVICE, obs, request
from tests.fhir.helpers import INTERPRET, observation

BOMB = "m^9^9^9"


class PintCalled(BaseException):
    """A BaseException, so no `except Exception` on the request path can swallow it."""


@pytest.fixture()
def pint_out_of_reach(app, monkeypatch):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def refuse(name):  # type: ignore[no-untyped-def]
        def called(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            raise PintCalled(name)
        return called

    monkeypatch.setattr(pint.util.ParserHelper, "from_string", classmethod(refuse("ParserHelper.from_string")))
    for method in ("parse_units", "parse_expression", "parse_unit_name", "__init__"):
        monkeypatch.setattr(pint.UnitRegistry, method, refuse(f"UnitRegistry.{method}"))
    yield calls
    assert calls == []


def test_the_guard_catches_a_pint_parse(pint_out_of_reach):
    with pytest.raises(PintCalled):
        pint.UnitRegistry()
    assert pint_out_of_reach == ["UnitRegistry.__init__"]
    pint_out_of_reach.clear()


def test_v1_json(client, pint_out_of_reach):
    response = client.post("/v1/interpret", json={"results": [{"analyte": "calcium", "value": 9, "unit": BOMB}]})
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["pointer"] == "/results/0/unit" and error["code"] == "unknown_unit" and BOMB in error["reason"]


def test_batch(client, pint_out_of_reach):
    response = client.post("/v1/interpret/batch", json={"panels": [
        {"id": "a", "results": [{"analyte": "calcium", "value": 9, "unit": BOMB}]},
        {"id": "b", "results": [{"analyte": "calcium", "value": 9, "unit": "mg/dL"}]}]})
    assert response.status_code == 200
    bad, good = response.get_json()["panels"]
    assert bad["error"]["errors"][0]["code"] == "unknown_unit" and "result" in good


def test_csv_rows(client, pint_out_of_reach):
    rows = "".join(f"s{i},calcium,9,{BOMB}\n" for i in range(200))
    response = client.post("/v1/interpret/csv", data="specimen_id,analyte,value,unit\n" + rows,
                           content_type="text/csv")
    assert response.status_code == 200
    out = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(out) == 200 and all(f"unknown unit '{BOMB}'" in row["error"] for row in out)


@pytest.mark.parametrize("unit, shown", [("cd**9**9**7", "cd**9**9**7"), ("mol\\S\\9\\S\\9\\S\\7", "mol^9^9^7")])
def test_hl7(client, pint_out_of_reach, unit, shown):
    message = ("MSH|^~\\&|LIS|LAB|EHR|WARD|20261123083000||ORU^R01|M1|P|2.5.1\r"
               "PID|1||P1||DOE^JANE||19700315|F\r"
               "OBR|1|O1|F1|24362-6^Panel^LN|||20261123073000\r"
               f"OBX|1|NM|2823-3^Potassium^LN||6.4|{unit}|||||F\r")
    response = client.post("/v1/hl7", data=message.encode(), content_type="application/hl7-v2")
    assert response.status_code == 200
    (obx,) = response.get_json()["observations"]
    assert obx["outcome"] == "not_interpreted" and obx["reason"].startswith(f"OBX-6: unknown unit '{shown}'")


def test_fhir(client, pint_out_of_reach):
    response = client.post(INTERPRET, json=observation("2823-3", 6.4, BOMB),
                           headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200
    issues = [i for e in response.get_json()["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
              for i in e["resource"]["issue"]]
    assert any(f"unknown unit '{BOMB}'" in i["diagnostics"] for i in issues)


def test_cds_hooks(client, pint_out_of_reach):
    response = client.post(SERVICE, json=request(obs("2823-3", 6.4, BOMB, id="o1")))
    assert response.status_code == 200
    assert any(f"unknown unit '{BOMB}'" in card.get("detail", "") for card in response.get_json()["cards"])
