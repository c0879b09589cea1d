"""CSV in, CSV out: real files (every unit spelling, BOM and ';', bad rows), header rules, streaming."""

from __future__ import annotations

import csv
import io

import pytest

from labinterp.core import Engine
from labinterp.core.columnar import ColumnarInterpreter
from labinterp.files.csvfile import CsvHeaderError, CsvJob
from tests.labwork.conftest import FILES

APPENDED = ["canonical_value", "canonical_unit", "interval_low", "interval_high", "classification", "flag",
            "critical", "ctcae_grade", "warnings", "error", "interval_origin", "interval_source"]


def run_file(engine: Engine, name: str, block_bytes: int = 1 << 20, lab: str | None = None) -> tuple[str, CsvJob]:
    with (FILES / name).open("rb") as f:
        job = CsvJob(ColumnarInterpreter(engine, lab), f, block_bytes=block_bytes)
        return b"".join(job).decode(), job


def run_text(engine: Engine, text: str, lab: str | None = None) -> list[dict[str, str]]:
    return rows_of(b"".join(CsvJob(ColumnarInterpreter(engine, lab), io.BytesIO(text.encode()))).decode())


def rows_of(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_every_unit_spelling_in_the_data_is_read(engine: Engine) -> None:
    text, job = run_file(engine, "every_unit_spelling.csv")
    rows = rows_of(text)
    assert job.summary.errors == 0 and len(rows) == job.summary.rows == 134
    k = engine.knowledge
    # the file covers every spelling the data accepts for every analyte (a new spelling needs a row)
    covered = {(r["analyte"], k.resolve_unit(r["unit"])) for r in rows}
    assert covered == {(a, u) for (a, u) in k.factors if not k.analytes[a].derived}
    for r in rows:
        ucum = k.resolve_unit(r["unit"])
        assert float(r["canonical_value"]) == float(r["value"]) * k.factor(r["analyte"], ucum)
        assert r["classification"] == "normal", r  # each file value is the same normal value in another unit


def test_unknown_spelling_is_refused_with_its_line(engine: Engine) -> None:
    text = "specimen_id,analyte,value,unit\nX,calcium,9.2,mg/dl\nY,calcium,9.2,mgdl\n"
    out = run_text(engine, text)
    assert out[0]["error"] == ""
    assert out[1]["error"].startswith("line 3: unit: unknown unit 'mgdl'")


def test_bom_semicolons_bad_rows_quoted_fields_and_collisions(engine: Engine) -> None:
    text, job = run_file(engine, "mixed_bom_semicolon.csv")
    assert not text.startswith("\ufeff")
    header = text.split("\r\n", 1)[0].split(";")
    # input columns first, untouched; 'flag' was taken by an input column, so ours is prefixed
    assert header[:9] == ["sample note", "specimen_id", "Analyte", "value", "unit", "age_days", "sex", "flag",
                          "specimen"]
    assert header[9:] == [("labinterp_" + c if c == "flag" else c) for c in APPENDED]
    rows = rows_of(text, ";")
    errors = {r["error"].split(":")[0]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"line 2", "line 9", "line 10", "line 13", "line 15", "line 16", "line 17"}
    assert "value: must be a finite number" in errors["line 2"]  # "7,9": a decimal comma is refused
    assert "LOINC 1994-3 is measured in whole_blood" in errors["line 9"]
    assert "unknown analyte 'sodium'" in errors["line 10"]
    assert errors["line 13"] == "line 13: empty line"
    assert "differs from an earlier row" in errors["line 15"]
    assert "has 4 fields" in errors["line 16"] and "has 10 fields" in errors["line 17"]
    # every input row is kept, in order, plus one derived row after its panel
    assert job.summary.rows == 15 and len(rows) == 16 and job.summary.errors == 7
    assert [r["specimen_id"] for r in rows][:6] == ["A1"] * 6
    derived = rows[5]
    assert derived["Analyte"] == "corrected_calcium" and derived["warnings"].startswith("derived|")
    assert rows[4]["sample note"] == "a note over\ntwo lines"  # a quoted field over two lines
    assert rows[3]["sample note"] == 'quoted; with "semicolon"'
    assert rows[2]["flag"] == "" and rows[1]["flag"] == "x"  # carried through untouched
    assert rows[6]["labinterp_flag"] == "N"  # a newborn's potassium 5.0 against the newborn interval
    off_scale = [r for r in rows if r["value"] in ("<2.0", ">7")]
    assert [r["labinterp_flag"] for r in off_scale] == ["LL", "HH"]
    whole_blood = next(r for r in rows if r["specimen"] == "whole_blood")
    assert whole_blood["classification"] == "indeterminate" and "no_interval" in whole_blood["warnings"]
    extra = text.split("\r\n")[-2]
    assert extra.endswith(";extra")  # a field beyond the header is kept, after the appended columns


def test_raw_rows_are_written_back_byte_for_byte(engine: Engine) -> None:
    text, _ = run_file(engine, "mixed_bom_semicolon.csv")
    source = (FILES / "mixed_bom_semicolon.csv").read_text(encoding="utf-8-sig")
    first_rows = source.split("\n")[1:4]
    out_rows = text.split("\r\n")[1:4]
    for original, written in zip(first_rows, out_rows, strict=True):
        assert written.startswith(original + ";")


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 7, 64, 100, 1000])
def test_block_size_does_not_change_the_answer(engine: Engine, block_bytes: int) -> None:
    whole, _ = run_file(engine, "mixed_bom_semicolon.csv")
    assert run_file(engine, "mixed_bom_semicolon.csv", block_bytes=block_bytes)[0] == whole


@pytest.mark.parametrize("header, reason", [
    ("", "the file is empty"),
    ("specimen_id,analyte,value\n", "missing column(s) unit"),
    ("specimen_id,analyte,value,unit,unit\n", "named twice: unit"),
    ("specimen,analyte,value,unit\n", "missing column(s) specimen_id"),
])
def test_header_errors_name_the_columns(engine: Engine, header: str, reason: str) -> None:
    with pytest.raises(CsvHeaderError) as caught:
        CsvJob(ColumnarInterpreter(engine), io.BytesIO(header.encode()))
    assert reason in str(caught.value)


def test_header_in_other_case_and_order_is_accepted(engine: Engine) -> None:
    text = "Unit,VALUE,Analyte,Specimen_ID,AGE_YEARS\nmmol/L,5.6,potassium,S1,40\n"
    rows = run_text(engine, text)
    assert rows[0]["flag"] == "H" and rows[0]["error"] == ""


def test_a_bad_row_does_not_stop_its_panel(engine: Engine) -> None:
    text = ("specimen_id,analyte,value,unit,age_years\nP,calcium,7.9,mg/dL,50\nP,albumin,HEMOLYZED,g/dL,50\n"
            "P,magnesium,1.2,mg/dL,50\n")
    rows = run_text(engine, text)
    assert [r["error"][:7] for r in rows] == ["", "line 3:", ""]
    assert rows[0]["flag"] == "L" and rows[2]["flag"] == "L"
    assert "ctcae_needs_albumin" in rows[0]["warnings"]  # no albumin to correct with
    assert len(rows) == 3  # no corrected calcium without a usable albumin


def test_panels_are_adjacent_rows_only(engine: Engine) -> None:
    text = ("specimen_id,analyte,value,unit,age_years\nP,calcium,7.9,mg/dL,50\nQ,potassium,4,mmol/L,50\n"
            "P,albumin,2.9,g/dL,50\n")
    rows = run_text(engine, text)
    assert len(rows) == 3  # calcium and albumin are not adjacent: two panels P, no corrected calcium


def test_laboratory_profile_is_used_and_named(lab_engine: Engine) -> None:
    text = "specimen_id,analyte,value,unit,age_years\nS,potassium,5.25,mmol/litre,50\n"
    default = run_text(lab_engine, text)
    lab = run_text(lab_engine, text, "example-lab")
    assert "accepted units for potassium" in default[0]["error"]  # the spelling is only in the lab's units.toml
    assert lab[0]["interval_high"] == "5.3" and lab[0]["flag"] == "N"
    assert lab[0]["interval_origin"] == "laboratory" and "Banner Health" in lab[0]["interval_source"]
