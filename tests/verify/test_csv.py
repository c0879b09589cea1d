"""CSV verification (CLI and POST /v1/verify/csv): the same dispositions as /v1/verify for the same input."""

from __future__ import annotations

import csv
import io

import pytest

from labinterp.app import create_app
from labinterp.cli import main
from tests.verify.helpers import CASES, LAB_CASES, make_labs

COLUMNS = ["patient_id", "specimen_id", "analyte", "value", "unit", "comparator", "specimen", "hemolysis",
           "hemolysis_index", "collected_at", "age_years"]


def as_csv(body: dict, delimiter: str = ",") -> str:
    """A /v1/verify body as CSV rows: its previous results first (released rows of the same patient)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for i, p in enumerate(body.get("previous", [])):
        writer.writerow(["P", f"prev{i}", p["analyte"], p["value"], p["unit"], p.get("comparator", ""), "", "", "",
                         p.get("collected_at", ""), ""])
    age = body.get("patient", {}).get("age_years", "")
    for r in body["results"]:
        writer.writerow(["P", "current", r["analyte"], r["value"], r["unit"], r.get("comparator", ""),
                         r.get("specimen", ""), r.get("hemolysis", ""),
                         r.get("hemolysis_index", body.get("hemolysis_index", "")),
                         r.get("collected_at", body.get("collected_at", "")), age])
    return out.getvalue()


def current_dispositions(text: str) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(not r["error"] for r in rows), rows
    return [r["disposition"] for r in rows if r["specimen_id"] == "current"]


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    return make_labs(tmp_path_factory.mktemp("labs"))


@pytest.fixture(scope="module")
def lab_client(lab_dir):
    return create_app({"TESTING": True, "LABS_DIR": str(lab_dir)}).test_client()


def json_dispositions(client, body):
    answer = client.post("/v1/verify", json=body).get_json()
    return [r["verification"]["disposition"] for r in answer["results"]]


@pytest.mark.parametrize(("name", "body", "code", "disposition"), CASES + LAB_CASES,
                         ids=[c[0] for c in CASES + LAB_CASES])
def test_every_door_gives_the_same_dispositions(lab_client, lab_dir, tmp_path, name, body, code, disposition):
    body = {**body, "lab": "testlab"} if (name, body, code, disposition) in LAB_CASES else body
    lab = body.get("lab")
    expected = json_dispositions(lab_client, body)
    assert expected[0] == disposition
    # the CSV door
    response = lab_client.post("/v1/verify/csv" + (f"?lab={lab}" if lab else ""), data=as_csv(body),
                               content_type="text/csv")
    assert response.status_code == 200
    assert current_dispositions(response.get_data(as_text=True)) == expected
    # the command line
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text(as_csv(body, ";"))
    argv = ["verify", str(source), "-o", str(target), "--labs-dir", str(lab_dir)] + (["--lab", lab] if lab else [])
    assert main(argv) == 0
    assert current_dispositions(target.read_text()) == expected


def test_the_file_need_not_be_sorted_by_patient(client):
    text = ("patient_id,specimen_id,analyte,value,unit,collected_at\r\n"
            "A,a1,calcium,2.4,mmol/L,2026-03-01T08:00:00Z\r\n"
            "B,b1,calcium,2.4,mmol/L,2026-03-01T08:00:00Z\r\n"
            "A,a2,calcium,1.7,mmol/L,2026-03-02T08:00:00Z\r\n"
            "B,b2,calcium,2.3,mmol/L,2026-03-02T08:00:00Z\r\n"
            "C,c1,calcium,1.7,mmol/L,2026-03-02T08:00:00Z\r\n")
    rows = list(csv.DictReader(io.StringIO(client.post("/v1/verify/csv", data=text, content_type="text/csv")
                                           .get_data(as_text=True))))
    assert [r["disposition"] for r in rows] == ["release", "release", "hold", "release", "release"]
    assert rows[2]["verification_actions"] == "recollect"
    assert rows[2]["verification_reasons"].startswith("iv_fluid_contamination:")


def test_held_results_do_not_become_previous_results(client):
    text = ("patient_id,specimen_id,analyte,value,unit,collected_at\r\n"
            "A,a1,calcium,2.4,mmol/L,2026-03-01T08:00:00Z\r\n"
            "A,a2,calcium,1.7,mmol/L,2026-03-02T08:00:00Z\r\n"  # held: contamination
            "A,a3,calcium,2.3,mmol/L,2026-03-03T08:00:00Z\r\n")  # compared with 2.4, not 1.7
    rows = list(csv.DictReader(io.StringIO(client.post("/v1/verify/csv", data=text, content_type="text/csv")
                                           .get_data(as_text=True))))
    assert [r["disposition"] for r in rows] == ["release", "hold", "release"]


def test_bad_rows_are_kept_with_their_error(client):
    text = ("specimen_id,analyte,value,unit,collected_at,hemolysis_index\r\n"
            "s1,potassium,abc,mmol/L,,\r\n"
            "s1,potassium,4.0,mmol/L,yesterday,\r\n"
            "s1,potassium,4.0,mmol/L,,-3\r\n"
            "s1,potassium,4.0,furlongs,,\r\n"
            "s1,potassium,4.0,mmol/L,,\r\n")
    rows = list(csv.DictReader(io.StringIO(client.post("/v1/verify/csv", data=text, content_type="text/csv")
                                           .get_data(as_text=True))))
    assert len(rows) == 5
    assert [bool(r["error"]) for r in rows] == [True, True, True, True, False]
    assert rows[4]["disposition"] == "release"


def test_patient_columns_are_read_as_the_interpret_path_reads_them(client):
    """The same function reads a file's patient columns for both paths: an age out of range, or both ages given,
    is the row's error in both; a valid age is read."""
    text = ("specimen_id,analyte,value,unit,age_years,age_days\r\n"
            "s1,potassium,4.0,mmol/L,151,\r\n"
            "s2,potassium,4.0,mmol/L,40,100\r\n"
            "s3,potassium,4.0,mmol/L,150,\r\n")
    verified = list(csv.DictReader(io.StringIO(client.post("/v1/verify/csv", data=text, content_type="text/csv")
                                               .get_data(as_text=True))))
    interpreted = list(csv.DictReader(io.StringIO(client.post("/v1/interpret/csv", data=text,
                                                              content_type="text/csv").get_data(as_text=True))))
    assert [r["error"] for r in verified] == ["age_years: must be a finite number from 0 to 150",
                                              "give age_years or age_days, not both", ""]
    assert [r["error"].split(": ", 1)[-1] for r in interpreted] == [r["error"] for r in verified]
    assert verified[2]["disposition"] == "release"


def test_rows_of_the_wrong_length_keep_the_columns_aligned(client):
    """The appended columns stay under their header: a short row's missing fields are written empty, a long
    row's extra fields go after the appended columns (as the interpret path writes them)."""
    text = ("specimen_id,analyte,value,unit\r\n"
            "s1,potassium,4.0,mmol/L,extra1,extra2\r\n"
            "s2,potassium,4.0\r\n"
            "s3,potassium,4.0,mmol/L\r\n")
    lines = client.post("/v1/verify/csv", data=text, content_type="text/csv").get_data(as_text=True).splitlines()
    rows = list(csv.reader(lines))
    header = rows[0]
    assert [len(r) for r in rows[1:]] == [len(header) + 2, len(header), len(header)]
    long_row, short_row, good = (dict(zip(header, r, strict=False)) for r in rows[1:])
    assert long_row["error"] == "row has 6 fields, the header 4" and rows[1][-2:] == ["extra1", "extra2"]
    assert short_row["unit"] == "" and short_row["error"] == "row has 3 fields, the header 4"
    assert good["disposition"] == "release" and good["error"] == ""


@pytest.mark.parametrize(("data", "content_type", "status"), [
    ("analyte,value\r\npotassium,4\r\n", "text/csv", 422),
    ("", "text/csv", 422),
    ("specimen_id,analyte,value,unit\r\n", "application/json", 415),
])
def test_bad_files_are_problem_json(client, data, content_type, status):
    response = client.post("/v1/verify/csv", data=data, content_type=content_type)
    assert response.status_code == status and response.mimetype == "application/problem+json"


def test_unknown_laboratory_is_problem_json(client):
    response = client.post("/v1/verify/csv?lab=nowhere", data="specimen_id,analyte,value,unit\r\n",
                           content_type="text/csv")
    assert response.status_code == 422 and response.get_json()["errors"][0]["pointer"] == "/lab"


def test_memory_is_bounded_by_patients_not_rows(engine, knowledge, monkeypatch):
    from labinterp.core.verification_data import load_verification
    from labinterp.files import verifycsv

    monkeypatch.setattr(verifycsv, "MAX_KNOWN", 50)
    lines = ["patient_id,specimen_id,analyte,value,unit,collected_at"]
    for n in range(3000):
        lines.append(f"P{n % 7},S{n},potassium,{3 + (n % 300) / 100:.2f},mmol/L,2026-03-01T{n % 24:02d}:00:00Z")
    job = verifycsv.VerifyJob(engine, load_verification(knowledge), None, io.BytesIO("\n".join(lines).encode()))
    assert len(list(job)) >= 2  # streamed in blocks
    assert job.summary.rows == 3000
    assert len(job.history) == 7 and job.history.results() == 7  # one kept result per patient and analyte
    assert len(job.known) <= 50 + verifycsv.BLOCK_ROWS
