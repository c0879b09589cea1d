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


def current_dispositions(text: str, delimiter: str = ",") -> list[str]:
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
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
    assert current_dispositions(target.read_text(), ";") == expected  # written with the file's own delimiter


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


def rows_of(client, text: str, path: str = "/v1/verify/csv") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(client.post(path, data=text, content_type="text/csv")
                                           .get_data(as_text=True))))


def test_bad_rows_are_kept_with_their_error(client):
    """Every row comes out; a row that cannot be verified says which field and why, with its line."""
    text = ("specimen_id,analyte,value,unit,collected_at,hemolysis_index,hemolysis,comparator\r\n"
            "s1,potassium,abc,mmol/L,,,,\r\n"
            "s1,potassium,4.0,mmol/L,yesterday,,,\r\n"
            "s1,potassium,4.0,mmol/L,,-3,,\r\n"
            "s1,potassium,4.0,bananas,,,,\r\n"
            "s1,potassium,4.0,mmol/L,,,pinkish,\r\n"
            "s1,potassium,4.0,mmol/L,,,,about\r\n"
            "s1,potassium,<4.0,mmol/L,,,,>\r\n"
            "s1,potassium,4.0,mmol/L,,<5,,\r\n"
            "s1,potassium,4.0,mmol/L,,,,\r\n")
    rows = rows_of(client, text)
    assert [r["error"] for r in rows] == [
        "line 2: value: must be a finite number, not 'abc' (off-scale results are read as <x, <=x, >x, >=x, "
        "LESS THAN x, GREATER THAN x)",
        "line 3: collected_at: must be an ISO 8601 date-time",
        "line 4: hemolysis_index: must be a finite number, not negative",
        "line 5: unit: unknown unit 'bananas'; accepted units for potassium: " + rows[3]["error"].split(": ", 4)[-1],
        "line 6: hemolysis: must be one of ['none', 'slight', 'moderate', 'gross', 'degree_not_stated']",
        "line 7: comparator: must be one of ['<', '<=', '>', '>=']",
        "line 8: comparator: differs from the comparator written in the value",
        "line 9: hemolysis_index: must be a finite number, not negative",
        ""]
    assert rows[8]["disposition"] == "release" and all(not r["disposition"] for r in rows[:8])


def test_a_comparator_is_read_from_the_value_or_its_column(client):
    """'<0.5' in the value is read as the interpret path reads it; the comparator column says the same; both
    agreeing is one comparator."""
    text = ("specimen_id,analyte,value,unit,comparator\r\n"
            "s1,potassium,>9.0,mmol/L,\r\n"
            "s2,potassium,9.0,mmol/L,>\r\n"
            "s3,potassium,>9.0,mmol/L,>\r\n"
            "s4,potassium,9.0,mmol/L,\r\n")
    rows = rows_of(client, text)
    assert [r["error"] for r in rows] == ["", "", "", ""]
    off_scale = [r["verification_reasons"] for r in rows[:3]]
    assert off_scale[0] == off_scale[1] == off_scale[2] and "off_scale" in off_scale[0]
    assert "off_scale" not in rows[3]["verification_reasons"]


def test_a_specimen_is_one_patient(client):
    text = ("patient_id,specimen_id,analyte,value,unit\r\n"
            "A,s1,potassium,4.0,mmol/L\r\n"
            " A ,s1,calcium,2.4,mmol/L\r\n"
            "B,s1,magnesium,0.8,mmol/L\r\n")
    rows = rows_of(client, text)
    assert [r["error"] for r in rows] == [
        "", "", "line 4: patient_id differs from an earlier row with this specimen_id (the specimen starts at line 2)"]


def test_row_errors_are_the_interpret_paths(client):
    """The two file paths read a file with one reader: the same rows in error, with the same words and lines
    (empty lines, rows of the wrong length, patient columns, values, units)."""
    text = ("specimen_id,analyte,value,unit,age_years,age_days\r\n"
            "s1,potassium,4.0,mmol/L,151,\r\n"
            "\r\n"
            "s2,potassium,4.0,mmol/L,40,100\r\n"
            "s3,potassium,4.0,mmol/L,150,\r\n"
            "s4,potassium,4.0\r\n"
            ",potassium,4.0,mmol/L,,\r\n"
            "s5,potassium,-1,mmol/L,,\r\n"
            "s6,natrium,140,mmol/L,,\r\n")
    verified, interpreted = rows_of(client, text), rows_of(client, text, "/v1/interpret/csv")
    assert [r["error"] for r in verified] == [r["error"] for r in interpreted]
    assert [bool(r["error"]) for r in verified] == [True, True, True, False, True, True, True, True]
    assert verified[0]["error"] == "line 2: age_years: must be a finite number from 0 to 150"
    assert verified[1]["error"] == "line 3: empty line"
    assert verified[3]["disposition"] == "release"


AWKWARD_FILES = {  # a file, and how many of its rows are errors
    "CR line ends": ("specimen_id,analyte,value,unit\rs1,potassium,4.0,mmol/L\rs2,calcium,x,mmol/L\r", 1),
    "BOM and semicolons": ("\ufeffspecimen_id;analyte;value;unit\r\ns1;potassium;4,0;mmol/L\r\n"
                           "s2;calcium;2.4;mmol/L\r\n", 1),
    "an unbalanced quote": ('specimen_id,analyte,value,unit,note\r\ns1,potassium,4.0,mmol/L,"5 mL tube\r\n'
                            's2,potassium,4.1,mmol/L,\r\n', 1),
    "a line over the limit": ("specimen_id,analyte,value,unit,note\r\ns1,potassium,4.0,mmol/L," + "x" * 20_000
                              + "\r\ns2,potassium,4.1,mmol/L,\r\n", 1),
    "a panel over the limit": ("specimen_id,analyte,value,unit\r\n" + "s1,potassium,4.0,mmol/L\r\n" * 201
                               + "s2,potassium,4.1,mmol/L\r\n", 201),
}


@pytest.mark.parametrize(("text", "errors"), AWKWARD_FILES.values(), ids=AWKWARD_FILES.keys())
def test_awkward_files_are_read_as_the_interpret_path_reads_them(client, text, errors):
    """One reader for both file paths: the same rows (none lost), the same errors; the rest verified."""
    def rows(path: str) -> list[dict[str, str]]:
        answer = client.post(path, data=text.encode(), content_type="text/csv").get_data(as_text=True)
        return list(csv.DictReader(io.StringIO(answer), delimiter=";" if "specimen_id;" in text else ","))

    verified, interpreted = rows("/v1/verify/csv"), rows("/v1/interpret/csv")
    interpreted = [r for r in interpreted if r["analyte"] != "corrected_calcium"]
    assert len(verified) == len(interpreted) >= 2
    assert [r["error"] for r in verified] == [r["error"] for r in interpreted]
    assert sum(1 for r in verified if r["error"]) == errors
    assert all(bool(r["disposition"]) != bool(r["error"]) for r in verified)


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
    assert long_row["error"] == "line 2: has 6 fields, the header has 4" and rows[1][-2:] == ["extra1", "extra2"]
    assert short_row["unit"] == "" and short_row["error"] == ("line 3: has 3 fields, the header has 4; unit: a unit is "
                                                              "required")
    assert good["disposition"] == "release" and good["error"] == ""


def test_a_file_is_written_back_as_it_came(client):
    """Rows are written as they came (delimiter, quoting, other columns), the appended columns after them; a
    column already named like an appended one keeps its name and the appended one is prefixed."""
    text = ('specimen_id;analyte;value;unit;flag;note\r\n'
            's1;potassium;4,0;mmol/L;x;"a; b"\r\n'
            's2;potassium;7.1;mmol/L;y;plain\n')
    lines = client.post("/v1/verify/csv", data=text, content_type="text/csv").get_data(as_text=True).split("\r\n")
    assert lines[0] == ("specimen_id;analyte;value;unit;flag;note;disposition;verification_actions;"
                        "verification_reasons;labinterp_flag;error")
    assert lines[1].startswith('s1;potassium;4,0;mmol/L;x;"a; b";;;;;line 2: value: must be a finite number')
    assert lines[2].startswith("s2;potassium;7.1;mmol/L;y;plain;hold;notify;critical_value:")
    assert lines[3] == ""


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


def test_memory_is_bounded_by_patients_not_rows(engine, knowledge):
    from labinterp.core.verification_data import load_verification
    from labinterp.files import verifycsv

    lines = ["patient_id,specimen_id,analyte,value,unit,collected_at"]
    for n in range(3000):
        lines.append(f"P{n % 7},S{n},potassium,{3 + (n % 300) / 100:.2f},mmol/L,2026-03-01T{n % 24:02d}:00:00Z")
    job = verifycsv.VerifyJob(engine, load_verification(knowledge), None, io.BytesIO("\n".join(lines).encode()),
                              block_bytes=20_000)
    assert len(list(job)) >= 5  # streamed in blocks
    assert job.summary.rows == 3000
    assert len(job.history) == 7 and job.history.results() == 7  # one kept result per patient and analyte


def test_every_date_time_is_a_time(client):
    """No real collection time is mistaken for the mark of an unreadable one (one microsecond before 1970 was)."""
    text = ("specimen_id,analyte,value,unit,collected_at\r\n"
            "s1,potassium,4.0,mmol/L,1969-12-31T23:59:59.999999+00:00\r\n"
            "s2,potassium,4.0,mmol/L,1970-01-01T00:00:00Z\r\n"
            "s3,potassium,4.0,mmol/L,0001-01-01T00:00:00\r\n"
            "s4,potassium,4.0,mmol/L,31/12/1969\r\n")
    assert [r["error"] for r in rows_of(client, text)] == ["", "", "",
                                                           "line 5: collected_at: must be an ISO 8601 date-time"]


def test_an_empty_line_is_an_empty_line(client):
    """An empty line inside a specimen without a specimen_id is reported as what it is, whatever its neighbours."""
    text = "patient_id,specimen_id,analyte,value,unit\r\nA,,potassium,4.0,mmol/L\r\n\r\nB,s2,potassium,4.0,mmol/L\r\n"
    errors = [r["error"] for r in rows_of(client, text)]
    assert errors[1] == "line 3: empty line" and errors[2] == ""


def test_the_upload_is_received_as_the_interpret_paths():
    """The two file doors receive a CSV alike (http/uploads.py): the spool budget (507, given back after each
    answer), the size limit (413; a body of exactly the limit is read), and the file limits of the settings."""
    body = b"specimen_id,analyte,value,unit\r\n" + b"S,potassium,4.0,mmol/L\r\n" * 5_000  # 120 kB, one panel
    app = create_app({"TESTING": True, "CSV_SPOOL_BYTES": 100_000, "CSV_MAX_PANEL_ROWS": 10})
    client = app.test_client()
    for path in ("/v1/verify/csv", "/v1/interpret/csv"):
        response = client.post(path, data=body, content_type="text/csv")
        assert response.status_code == 507 and response.headers["Retry-After"], path
        small = body[:600].rsplit(b"\r\n", 1)[0] + b"\r\n"  # 23 rows of one specimen: over the panel limit
        for _ in range(3):
            answer = client.post(path, data=small, content_type="text/csv")
            assert answer.status_code == 200
            rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
            assert rows and all("LABINTERP_CSV_MAX_PANEL_ROWS" in r["error"] for r in rows), path
    exact = create_app({"TESTING": True, "CSV_MAX_BYTES": len(body)}).test_client()
    assert exact.post("/v1/verify/csv", data=body, content_type="text/csv").status_code == 200
    assert exact.post("/v1/verify/csv", data=body + b"S", content_type="text/csv").status_code == 413


def test_a_range_sent_with_the_row_is_the_interpret_paths_and_v1_verifys(client):
    """reference_low / reference_high (and reference_unit) classify the row in the verify path as in the
    interpret path, and as a reference_interval sent to /v1/verify does: the same flag, the same disposition."""
    text = ("specimen_id,analyte,value,unit,reference_low,reference_high,reference_unit\r\n"
            "s1,potassium,5.2,mmol/L,3.5,5.0,\r\n"
            "s2,potassium,5.2,mmol/L,,,\r\n"
            "s3,potassium,5.2,mmol/L,3.5,abc,mmol/L\r\n")
    verified, interpreted = rows_of(client, text), rows_of(client, text, "/v1/interpret/csv")
    assert [r["flag"] for r in verified] == [r["flag"] for r in interpreted] == ["H", "N", ""]
    assert [r["error"] for r in verified] == [r["error"] for r in interpreted]
    assert verified[2]["error"].startswith("line 4: ")
    answer = client.post("/v1/verify", json={"results": [{
        "analyte": "potassium", "value": 5.2, "unit": "mmol/L",
        "reference_interval": {"low": 3.5, "high": 5.0}}]}).get_json()["results"][0]
    assert answer["flag"] == "H" and answer["verification"]["disposition"] == verified[0]["disposition"]
