"""POST /v1/interpret/csv: text/csv in and out, profile by query, limits and errors as problem+json."""

from __future__ import annotations

import csv
import io

from tests.labwork.conftest import FILES


def read(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


def test_csv_file_in_csv_out(client) -> None:  # type: ignore[no-untyped-def]
    body = (FILES / "every_unit_spelling.csv").read_bytes()
    response = client.post("/v1/interpret/csv", data=body, content_type="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = read(response)
    assert len(rows) == 134 and not any(r["error"] for r in rows)


def test_same_answer_as_the_command_line_path(client, engine) -> None:  # type: ignore[no-untyped-def]
    from tests.labwork.test_csv_files import run_file

    body = (FILES / "mixed_bom_semicolon.csv").read_bytes()
    response = client.post("/v1/interpret/csv", data=body, content_type="text/csv; charset=utf-8")
    assert response.get_data(as_text=True) == run_file(engine, "mixed_bom_semicolon.csv")[0]


def test_profile_by_query(lab_client) -> None:  # type: ignore[no-untyped-def]
    body = b"specimen_id,analyte,value,unit,age_years\nS,potassium,5.25,mmol/L,50\n"
    default = read(lab_client.post("/v1/interpret/csv", data=body, content_type="text/csv"))
    lab = read(lab_client.post("/v1/interpret/csv?lab=example-lab", data=body, content_type="text/csv"))
    assert (default[0]["flag"], lab[0]["flag"]) == ("H", "N")
    unknown = lab_client.post("/v1/interpret/csv?lab=nowhere", data=body, content_type="text/csv")
    assert unknown.status_code == 422 and unknown.mimetype == "application/problem+json"


def test_header_problem_is_422_naming_the_columns(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/interpret/csv", data=b"specimen_id,value\n1,2\n", content_type="text/csv")
    assert response.status_code == 422
    assert "missing column(s) analyte, unit" in response.get_json()["detail"]


def test_not_csv_is_415(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/interpret/csv", json={"a": 1})
    assert response.status_code == 415 and response.mimetype == "application/problem+json"


def test_larger_than_configured_is_413_and_the_json_limit_does_not_apply() -> None:
    from labinterp.app import create_app

    client = create_app({"TESTING": True, "CSV_MAX_BYTES": 5000, "MAX_BODY_BYTES": 1000}).test_client()
    row = b"S1,potassium,4.1,mmol/L\n"
    header = b"specimen_id,analyte,value,unit\n"
    small = header + row * 100  # above MAX_BODY_BYTES, below CSV_MAX_BYTES
    assert client.post("/v1/interpret/csv", data=small, content_type="text/csv").status_code == 200
    big = header + row * 300
    response = client.post("/v1/interpret/csv", data=big, content_type="text/csv")
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
