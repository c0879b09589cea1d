"""Property-based fuzzing of the two CSV readers (issue 11): whatever the bytes, both readers and every block size
give the same answer, byte for byte, and every input line comes out as a row, in order, errors naming their line;
the verify path, which reads with them, too, with the interpret path's errors.

Bounded in the default suite; `make fuzz` runs a longer campaign (LABINTERP_FUZZ_EXAMPLES)."""

from __future__ import annotations

import csv
import io
import os
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labinterp.files.csvfile as csvfile
from labinterp.core import Engine, load_knowledge
from labinterp.core.columnar import ColumnarInterpreter
from labinterp.core.verification_data import load_verification
from labinterp.files.csvfile import CsvJob, CsvLimits
from labinterp.files.verifycsv import VerifyJob
from labinterp.render.csvrows import OUTPUT_COLUMNS

EXAMPLES = int(os.environ.get("LABINTERP_FUZZ_EXAMPLES", "20"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINE = Engine(load_knowledge())  # hypothesis does not mix with function-scoped fixtures
# a first column naming each line: no line can then be read as the inside of a field, so every
# line must come out as a row of its own (the rule for quoted fields over lines is tested elsewhere)
COLUMNS = ["line", "specimen_id", "analyte", "value", "unit", "age_years", "note"]

texts = st.text(alphabet=st.sampled_from(list('abcXYZ019.,;" <>_-\0\u00e9\u0664\u2028\t')), max_size=12)
values = st.sampled_from(["4.0", "6.9", "2.1", "9.2", "2.9", ".5", "4.", "<0.5", ">= 7", "-1", "1_0", "1e3", "inf",
                          "\u0664", "", "HEMOLYZED", " 4 ", "+5"]) | texts


@st.composite
def fields_of_a_row(draw: st.DrawFn, plain: bool) -> list[str]:
    fields = [draw(st.sampled_from(["P1", "P2", "P3", ""])), draw(st.sampled_from(
        ["calcium", "albumin", "potassium", "magnesium", "sodium", "2823-3"])), draw(values),
        draw(st.sampled_from(["mg/dL", "g/dL", "mmol/L", "mEq/L", "furlongs", ""])),
        draw(st.sampled_from(["", "45", "80", "4_0", "-1", "0.5"])), draw(texts)]
    if plain:
        return [f.replace('"', "").replace(",", "").replace(";", "").replace("\0", "") for f in fields]
    if draw(st.booleans()):
        fields = fields[:draw(st.integers(0, len(fields)))] + draw(st.lists(texts, max_size=3))  # short or long rows
    return fields


@st.composite
def files(draw: st.DrawFn) -> tuple[bytes, str, CsvLimits]:
    plain = draw(st.booleans())
    sep = draw(st.sampled_from([",", ";"]))
    end = draw(st.sampled_from(["\n", "\r\n"] if plain else ["\n", "\r\n", "\r"]))
    lines = [sep.join(COLUMNS)]
    for k in range(2, 2 + draw(st.integers(0, 40))):
        repeat = draw(st.integers(1, 4)) if len(lines) > 1 and draw(st.booleans()) else 0
        if not plain and draw(st.integers(0, 15)) == 0:
            lines.append("")  # an empty line
            continue
        fields = draw(fields_of_a_row(plain))
        if repeat and lines[-1]:  # the same specimen as the line before: panels
            previous = next(csv.reader([lines[-1]], delimiter=sep))
            if len(previous) > 1 and len(fields) > 1:
                fields[0] = previous[1]
        written = []
        for f in fields:
            how = draw(st.sampled_from(["raw", "quoted", "open"])) if not plain else "raw"
            written.append(f if how == "raw" else '"' + f.replace('"', '""') + ('"' if how == "quoted" else ""))
        lines.append(sep.join([f"L{k}", *written]))
    data = (end.join(lines) + (end if draw(st.booleans()) else "")).encode()
    limits = CsvLimits(max_line_bytes=draw(st.sampled_from([60, 90, 65_536])), max_columns=20,
                       max_panel_rows=draw(st.sampled_from([2, 3, 200])))
    return data, sep, limits


def interpreted(data: bytes, block_bytes: int, limits: CsvLimits) -> tuple[bytes, int]:
    job = CsvJob(ColumnarInterpreter(ENGINE), io.BytesIO(data), block_bytes, limits=limits)
    return b"".join(job), job.summary.rows


@FUZZ
@given(files(), st.sampled_from([5, 32, 128, 300]))
def test_fuzz_both_readers_agree_and_keep_every_line(file: tuple[bytes, str, CsvLimits], block_bytes: int) -> None:
    data, sep, limits = file
    whole, rows = interpreted(data, 1 << 16, limits)
    assert interpreted(data, block_bytes, limits) == (whole, rows)
    with mock.patch.object(csvfile, "plain", lambda block: False):  # every block read by the csv module
        assert interpreted(data, block_bytes, limits) == (whole, rows)

    lines = data.splitlines()[1:]
    expected = ["" if not line or len(line) > limits.max_line_bytes else f"L{k}" for k, line in enumerate(lines, 2)]
    out = list(csv.reader(io.StringIO(whole.decode(), newline=""), delimiter=sep))
    warnings, error = len(COLUMNS) + OUTPUT_COLUMNS.index("warnings"), len(COLUMNS) + OUTPUT_COLUMNS.index("error")
    inputs = [row for row in out[1:] if not row[warnings].startswith("derived")]
    assert rows == len(lines) == len(inputs)  # rows in = rows out, errors included
    assert [row[0] for row in inputs] == expected  # in order, none taken into another's field
    for k, row in enumerate(inputs, 2):
        assert not row[error] or row[error].startswith(f"line {k}: ")


VERIFY_RULES = load_verification(ENGINE.knowledge)


def verified(data: bytes, block_bytes: int, limits: CsvLimits) -> tuple[bytes, int]:
    job = VerifyJob(ENGINE, VERIFY_RULES, None, io.BytesIO(data), block_bytes=block_bytes, limits=limits)
    return b"".join(job), job.summary.rows + job.summary.errors


@FUZZ
@given(files(), st.sampled_from([5, 32, 128, 300]))
def test_fuzz_the_verify_path_reads_as_the_interpret_path(file: tuple[bytes, str, CsvLimits],
                                                         block_bytes: int) -> None:
    """The verify path reads with the same reader: whatever the bytes and the block size, the same answer; every
    line comes out, in order, with the interpret path's error, or verified."""
    data, sep, limits = file
    whole, rows = verified(data, 1 << 16, limits)
    assert verified(data, block_bytes, limits) == (whole, rows)
    with mock.patch.object(csvfile, "plain", lambda block: False):
        assert verified(data, block_bytes, limits) == (whole, rows)
    out = list(csv.reader(io.StringIO(whole.decode(), newline=""), delimiter=sep))
    interpreted_rows = list(csv.reader(io.StringIO(interpreted(data, 1 << 16, limits)[0].decode(), newline=""),
                                       delimiter=sep))
    warnings, error = len(COLUMNS) + OUTPUT_COLUMNS.index("warnings"), len(COLUMNS) + OUTPUT_COLUMNS.index("error")
    inputs = [row for row in interpreted_rows[1:] if not row[warnings].startswith("derived")]
    width = len(COLUMNS)
    assert rows == len(out) - 1 == len(inputs)
    assert [row[0] for row in out[1:]] == [row[0] for row in inputs]
    assert [row[width + 4] for row in out[1:]] == [row[error] for row in inputs]  # the same errors
    assert all(bool(row[width]) != bool(row[width + 4]) for row in out[1:])  # verified, or its error


def test_the_fuzzing_can_fail() -> None:
    """The property above catches a reader that takes the lines after an open quote into its field."""
    data = (b"line,specimen_id,analyte,value,unit,age_years,note\n"
            b"L2,P1,potassium,4.0,mmol/L,,\"open\nL3,P2,potassium,6.9,mmol/L,,\n")
    limits = CsvLimits(65_536, 20, 200)
    whole, _ = interpreted(data, 1 << 16, limits)
    assert [r[0] for r in csv.reader(io.StringIO(whole.decode(), newline=""))][1:] == ["L2", "L3"]
    def one_row(self, lines, final):  # type: ignore[no-untyped-def]
        return [self._record(next(csv.reader(lines)), 0, len(lines), "")]  # the csv module alone: one row for both

    with mock.patch.object(csvfile.CsvJob, "_records", one_row), mock.patch.object(csvfile, "plain", lambda b: False):
        swallowed, _ = interpreted(data, 1 << 16, limits)
    assert [r[0] for r in csv.reader(io.StringIO(swallowed.decode(), newline=""))][1:] == ["L2"]


@st.composite
def files_with_fields_over_lines(draw: st.DrawFn) -> tuple[bytes, list[list[str]]]:
    """Files as csv.writer writes them, some notes over several lines (whose later lines hold no
    delimiter and no quote: the rule under which a quoted field may hold line breaks)."""
    rows = []
    for _ in range(draw(st.integers(1, 25))):
        note = draw(texts.filter(lambda t: "\0" not in t))
        for _ in range(draw(st.integers(0, 2))):
            note += "\n" + draw(st.text(alphabet=st.sampled_from(list("abc 019.<>_\u00e9")), max_size=8))
        rows.append([draw(st.sampled_from(["P1", "P2", "P3"])), draw(st.sampled_from(["calcium", "albumin",
                     "potassium"])), draw(values.filter(lambda t: "\0" not in t)), draw(st.sampled_from(
                         ["mg/dL", "g/dL", "mmol/L", ""])), note])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["specimen_id", "analyte", "value", "unit", "note"])
    writer.writerows(rows)
    return out.getvalue().encode(), rows


@FUZZ
@given(files_with_fields_over_lines(), st.sampled_from([5, 32, 128, 300]))
def test_fuzz_fields_over_lines_are_read_whole_by_both_readers(file: tuple[bytes, list[list[str]]],
                                                              block_bytes: int) -> None:
    data, rows = file
    limits = CsvLimits(65_536, 20, 200)
    whole, count = interpreted(data, 1 << 16, limits)
    assert interpreted(data, block_bytes, limits) == (whole, count)
    with mock.patch.object(csvfile, "plain", lambda block: False):
        assert interpreted(data, block_bytes, limits) == (whole, count)
    out = list(csv.reader(io.StringIO(whole.decode(), newline="")))[1:]
    warnings = 5 + OUTPUT_COLUMNS.index("warnings")
    assert [row[:5] for row in out if not row[warnings].startswith("derived")] == rows and count == len(rows)
