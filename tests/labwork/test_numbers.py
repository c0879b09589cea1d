"""One strict reader of numbers (labinterp.core.numbers) for CSV values and ages and HL7 OBX-5 (issue 11, defect 10)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labinterp.core import Engine
from labinterp.core.columnar import ColumnarInterpreter, Numbers
from labinterp.core.numbers import all_plain_characters, read_number, read_result
from labinterp.files.csvfile import CsvJob
from tests.labwork.conftest import ROOT

# what float() reads and a laboratory system never writes
LENIENT = ["0_5", "1_2.3_4", "4_0", "\u0664", "\u0664.\u0665", "\uff14", "\uff16.\uff19", "\u0966", "1e3", "1E-2",
           "inf", "-inf", "nan", "NaN", "infinity", "4\u00a0", "\u20034", "0x10", "1,5", "4.0.1", "", " ", ".", "+",
           "- 4", "<", "<=", "<<5", "<0_5", "> \u0664", "=5", "5-", "4 4"]


@pytest.mark.parametrize("text, read", [
    ("4.25", 4.25), ("12", 12.0), (".5", 0.5), ("4.", 4.0), (" 4 ", 4.0), ("\t6.9", 6.9), ("0000004.25", 4.25),
    ("+5", 5.0), ("-1", -1.0), ("-0", 0.0)])
def test_plain_decimals_are_read(text: str, read: float) -> None:
    assert read_number(text) == read and read_result(text) == (read, None)


@pytest.mark.parametrize("text, read", [("<0.5", (0.5, "<")), ("<= 1", (1.0, "<=")), (">9", (9.0, ">")),
                                        (" >= 7.0 ", (7.0, ">="))])
def test_off_scale_forms_are_read(text: str, read: tuple[float, str]) -> None:
    assert read_result(text) == read and read_number(text) is None  # no comparator where none is allowed


@pytest.mark.parametrize("text", LENIENT)
def test_what_float_alone_would_read_is_refused(text: str) -> None:
    assert read_result(text) is None and read_number(text) is None


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789._+-eE \t<>=\u0664\uff14x"), max_size=12) | st.text(max_size=8))
def test_a_number_read_is_plain_ascii_and_float_agrees(text: str) -> None:
    read = read_result(text)
    if read is not None:
        number = text.strip(" \t").lstrip("<>=").strip(" \t")
        assert re.fullmatch(r"[+-]?[0-9]*\.?[0-9]*", number) and float(number) == read[0]
    if all_plain_characters([text]):  # the fast path of the CSV reader: float() then agrees exactly
        try:
            assert float(text) == read_number(text)
        except ValueError:
            assert read_number(text) is None


def test_the_fast_path_check_can_fail() -> None:
    assert all_plain_characters(["4.0", " 5", "-1"]) and not all_plain_characters(["4.0", "1_0"])
    assert not all_plain_characters(["\u0664"]) and not all_plain_characters(["1e3"])


def test_the_column_reader_refuses_them_and_keeps_the_others() -> None:
    read = Numbers.of(["4.1", "1_2.3_4", "<0.5", "\uff14", "6.9"])
    assert read.bad.tolist() == [False, True, False, True, False]
    assert read.value[[0, 2, 4]].tolist() == [4.1, 0.5, 6.9] and read.comparator.tolist()[2] == 1


def csv_rows(engine: Engine, data: bytes) -> list[dict[str, str]]:
    out = b"".join(CsvJob(ColumnarInterpreter(engine), io.BytesIO(data)))
    return list(csv.DictReader(io.StringIO(out.decode(), newline="")))


def lenient_file() -> bytes:
    return ("specimen_id,analyte,value,unit,age_years\n"
            "A,potassium,1_2.3_4,mmol/L,50\nB,potassium,0_5,mmol/L,50\nC,potassium,\u0664,mmol/L,50\n"
            "D,potassium,4.2,mmol/L,4_0\nE,potassium,<0_5,mmol/L,50\nF,potassium,6.9,mmol/L,50\n").encode()


def check_lenient_rows(rows: list[dict[str, str]]) -> None:
    assert [r["error"].split(":")[0] for r in rows] == ["line 2", "line 3", "line 4", "line 5", "line 6", ""]
    assert all("value: must be a finite number" in r["error"] for r in rows[:3] + rows[4:5])
    assert "age_years: must be a number" in rows[3]["error"]
    assert rows[5]["flag"] == "HH" and rows[5]["critical"] == "true"  # the plain critical value is read


def test_csv_values_and_ages_are_read_strictly(engine: Engine) -> None:
    check_lenient_rows(csv_rows(engine, lenient_file()))


def test_csv_door_reads_numbers_strictly(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/interpret/csv", data=lenient_file(), content_type="text/csv")
    assert response.status_code == 200
    check_lenient_rows(list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline=""))))


def test_command_line_reads_numbers_strictly(tmp_path: Path) -> None:
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_bytes(lenient_file())
    done = subprocess.run([sys.executable, "-m", "labinterp.cli", "interpret", str(source), "-o", str(out),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "errors 5" in done.stderr
    check_lenient_rows(list(csv.DictReader(out.open(newline=""))))


@pytest.mark.parametrize("value, outcome", [("6.9", "interpreted"), ("1_2.3_4", "not_interpreted"),
                                            ("\u0666.\u0669", "not_interpreted"), ("4_0", "not_interpreted"),
                                            ("<0.5", "interpreted"), ("<0_5", "not_interpreted")])
def test_hl7_obx5_is_read_strictly(client, value: str, outcome: str) -> None:  # type: ignore[no-untyped-def]
    message = ("MSH|^~\\&|LIS|LAB|EHR|WARD|20261123083000||ORU^R01|1|P|2.5.1\rPID|1||P1||DOE^JANE||19700315|F\r"
               f"OBX|1|NM|2823-3^K^LN||{value}|mmol/L|||||F\r")
    response = client.post("/v1/hl7", data=message.encode(), content_type="application/hl7-v2")
    assert response.status_code == 200
    observation = response.get_json()["observations"][0]
    assert observation["outcome"] == outcome
    if outcome == "not_interpreted":
        assert observation["reason"].startswith("OBX-5")
