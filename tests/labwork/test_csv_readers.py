"""The two CSV readers (numpy on plain blocks, the csv module for the rest) and the streaming around
them: the same file gives the same bytes whichever reader, block size or line end reads it."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labinterp.files.bytefields as bytefields
import labinterp.files.csvfile as csvfile
from labinterp.core import Engine
from labinterp.core.columnar import ColumnarInterpreter, Numbers
from labinterp.files.csvfile import CsvJob, ahead
from labinterp.render import csvrows
from tests.labwork.test_columnar_same_answers import random_rows, to_csv


def interpreted(engine: Engine, data: bytes, block_bytes: int = 1 << 20) -> bytes:
    return b"".join(CsvJob(ColumnarInterpreter(engine), io.BytesIO(data), block_bytes=block_bytes))


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


@pytest.fixture()
def general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every block read by the csv module."""
    monkeypatch.setattr(csvfile, "plain", lambda block: False)


@pytest.fixture()
def plain_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rows the numpy reader read."""
    counted: list[int] = []
    original = csvfile.CsvJob._read_plain

    def spy(self, fields, complete, final):  # type: ignore[no-untyped-def]
        counted.append(fields.count)
        return original(self, fields, complete, final)

    monkeypatch.setattr(csvfile.CsvJob, "_read_plain", spy)
    return counted


def plain_rows(seed: int) -> bytes:
    """A file the numpy reader can read: no quote (bad rows included: they have the right field count)."""
    return to_csv(random_rows(seed, 200)).replace('"', "").replace("\r\n", "\n").encode()


@pytest.mark.parametrize("seed", range(4))
def test_both_readers_give_the_same_bytes(engine: Engine, seed: int, plain_blocks: list[int],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = plain_rows(seed)
    fast = interpreted(engine, data, block_bytes=2000 + 500 * seed)
    assert sum(plain_blocks) > 500  # the numpy reader did read this file
    monkeypatch.setattr(csvfile, "plain", lambda block: False)
    assert interpreted(engine, data, block_bytes=2000 + 500 * seed) == fast


def test_the_comparison_of_readers_can_fail(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    data = plain_rows(1)
    fast = interpreted(engine, data)
    original = csvfile.CsvJob._read_general

    def lossy(self, complete, final):  # type: ignore[no-untyped-def]
        rows = original(self, complete, final)
        if rows is not None:
            rows.chunk.new_panel[:] = True  # every row its own panel: no corrected calcium
        return rows

    monkeypatch.setattr(csvfile, "plain", lambda block: False)
    monkeypatch.setattr(csvfile.CsvJob, "_read_general", lossy)
    assert interpreted(engine, data) != fast


@pytest.mark.parametrize("block_bytes", [1, 2, 17, 64, 1000, 1 << 20])
@pytest.mark.parametrize("line_end", [b"\r\n", b"\r"])
def test_line_ends_and_block_sizes_do_not_change_the_answer(engine: Engine, line_end: bytes,
                                                            block_bytes: int) -> None:
    data = plain_rows(2)[:4000]
    data = data[:data.rindex(b"\n") + 1]
    expected = interpreted(engine, data)
    assert interpreted(engine, data.replace(b"\n", line_end), block_bytes=block_bytes) == expected


def test_a_crlf_split_between_blocks_is_one_line_end(engine: Engine, plain_blocks: list[int],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    header = b"specimen_id,analyte,value,unit\r\n"
    row = b"A,potassium,4.0,mmol/L\r\n"
    data = header + b"".join(row.replace(b"A", f"{i:03d}".encode()) for i in range(50))
    general = []
    original = csvfile.CsvJob._read_general
    monkeypatch.setattr(csvfile.CsvJob, "_read_general",
                        lambda self, complete, final: general.append(1) or original(self, complete, final))
    out = rows_of(interpreted(engine, data, block_bytes=len(row) * 3 - 1))  # each block ends between CR and LF
    assert [r["specimen_id"] for r in out] == [f"{i:03d}" for i in range(50)] and all(r["flag"] == "N" for r in out)
    assert general == []  # the CR waited for its LF: the numpy reader read every block


def test_a_file_of_cr_line_ends_streams(engine: Engine) -> None:
    data = ("specimen_id,analyte,value,unit\r" + "".join(f"S{i},potassium,4.0,mmol/L\r" for i in range(2000))).encode()
    stream = io.BytesIO(data)
    blocks = iter(CsvJob(ColumnarInterpreter(engine), stream, block_bytes=500))
    assert stream.tell() <= 500  # the header, read without reading the whole file for an LF
    next(blocks), next(blocks), next(blocks)
    assert stream.tell() < len(data) / 4
    assert len(rows_of(b"".join(blocks))) > 1900


def test_invalid_utf8_is_refused_with_its_line_and_the_rest_is_read(engine: Engine) -> None:
    data = (b"specimen_id,analyte,value,unit\nA,potassium,4.0,mmol/L\nB,potassium,4.0,mmol/\xffL\n"
            b"C,calcium,9.1,mg/dL\n")
    out = rows_of(interpreted(engine, data))
    assert [r["error"][:7] for r in out] == ["", "line 3:", ""]
    assert "unknown unit 'mmol/\ufffdL'" in out[1]["error"]
    assert out[1]["unit"] == "mmol/\ufffdL"  # written back as read, the bad byte replaced


def test_utf8_spellings_are_read_by_the_numpy_reader(engine: Engine, plain_blocks: list[int]) -> None:
    data = "specimen_id,analyte,value,unit\nA,potassium,4100,\u00b5mol/L\nB,potassium,4.1,mmol/L\n".encode()
    out = rows_of(interpreted(engine, data))
    assert plain_blocks and [r["canonical_value"] for r in out] == ["4.1", "4.1"]


def test_fields_longer_than_the_coded_words_are_read_as_strings(engine: Engine, plain_blocks: list[int]) -> None:
    long_id = "S" * 40
    data = (f"specimen_id,analyte,value,unit,age_years\n{long_id}1,calcium,7.9,mg/dL,50\n"
            f"{long_id}1,albumin,2.9,g/dL,50\n{long_id}2,{'x' * 40},1,mmol/L,50\n").encode()
    out = rows_of(interpreted(engine, data))
    assert plain_blocks  # the numpy reader read these rows
    assert [r["analyte"] for r in out] == ["calcium", "albumin", "corrected_calcium", "x" * 40]
    assert out[2]["specimen_id"] == long_id + "1"  # the derived row belongs to the first panel only
    assert f"unknown analyte '{'x' * 40}'" in out[3]["error"]


def test_two_spellings_with_one_key_are_told_apart(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                   plain_blocks: list[int]) -> None:
    # with every word weighted 1, a text and its two 8-byte halves swapped have the same key
    monkeypatch.setattr(bytefields, "_MIX", bytefields._MIX * 0 + 1)
    first, second = "AAAAAAAABBBBBBBB", "BBBBBBBBAAAAAAAA"
    data = f"specimen_id,analyte,value,unit\nA,potassium,4,{first}\nA,potassium,4,{second}\n".encode()
    out = rows_of(interpreted(engine, data))
    assert plain_blocks
    assert f"'{first}'" in out[0]["error"] and f"'{second}'" in out[1]["error"]


def test_emptying_the_spelling_tables_mid_file_changes_nothing(engine: Engine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = ("specimen_id,analyte,value,unit,age_days\n"
            + "".join(f"S{i},potassium,{3 + i % 40 / 10:.1f},mmol/L,{i * 7}\n" for i in range(400))).encode()
    whole = interpreted(engine, data, block_bytes=1500)
    monkeypatch.setattr(bytefields, "MAX_SPELLINGS", 16)
    job = CsvJob(ColumnarInterpreter(engine), io.BytesIO(data), block_bytes=1500)
    assert b"".join(job) == whole
    assert 0 < len(job._spellings["age_days"].texts) < 100  # emptied along the way: 400 ages, not all kept


def test_a_nul_byte_sends_the_block_to_the_csv_module(engine: Engine, plain_blocks: list[int]) -> None:
    data = b"specimen_id,analyte,value,unit,note\nA,potassium,4.0,mmol/L,a\x00b\nB,potassium,5.8,mmol/L,c\n"
    out = rows_of(interpreted(engine, data))
    assert plain_blocks == [] and [r["flag"] for r in out] == ["N", "H"] and out[0]["note"] == "a\x00b"


def test_derived_rows_carry_the_panels_patient_even_when_its_last_row_leaves_it_empty(engine: Engine) -> None:
    data = (b"specimen_id,analyte,value,unit,age_years,sex\nP,calcium,7.9,mg/dL,50,F\n"
            b"P,albumin,2.9,g/dL,,\n")
    for reader in ("numpy", "csv"):
        text = interpreted(engine, data if reader == "numpy" else data + b'Q,potassium,4,mmol/L,"40",M\n')
        derived = rows_of(text)[2]
        assert derived["analyte"] == "corrected_calcium" and (derived["age_years"], derived["sex"]) == ("50", "F")


@pytest.mark.parametrize("reader", ["numpy", "csv"])
def test_every_row_of_a_panel_over_the_limit_is_an_error_and_it_is_not_held(engine: Engine, reader: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if reader == "csv":
        monkeypatch.setattr(csvfile, "plain", lambda block: False)
    limits = csvfile.CsvLimits(max_line_bytes=1000, max_columns=10, max_panel_rows=20)
    data = (b"specimen_id,analyte,value,unit\n" + b"O,potassium,4.0,mmol/L\n" * 20 + b"P,potassium,4.0,mmol/L\n" * 100
            + b"Q,potassium,7.5,mmol/L\n")
    pieces = list(CsvJob(ColumnarInterpreter(engine), io.BytesIO(data), block_bytes=100, limits=limits))
    out = rows_of(b"".join(pieces))
    assert len(out) == 121 and [r["flag"] for r in out] == ["N"] * 20 + [""] * 100 + ["HH"]  # 20 rows: within
    assert all(r["error"] == f"line {i + 22}: more than 20 rows in one panel (adjacent rows with this specimen_id; "
               "LABINTERP_CSV_MAX_PANEL_ROWS): not interpreted" for i, r in enumerate(out[20:120]))
    assert len(pieces) > 10  # written as it was read, not held until the panel ended


def test_a_panel_over_many_blocks_stays_one_panel(engine: Engine) -> None:
    data = (b"specimen_id,analyte,value,unit,age_years\n" + b"P,magnesium,2.0,mg/dL,50\n" * 40
            + b"P,calcium,7.9,mg/dL,50\nP,albumin,2.9,g/dL,50\n")
    out = rows_of(interpreted(engine, data, block_bytes=64))
    assert out[-1]["analyte"] == "corrected_calcium" and len(out) == 43


# ----------------------------------------------------------------------- ahead()
def test_ahead_keeps_the_order_and_raises_the_producers_error() -> None:
    def blocks() -> Iterator[bytes]:
        yield b"one"
        yield b"two"
        raise ValueError("broken file")

    seen = []
    with pytest.raises(ValueError, match="broken file"):
        for block in ahead(blocks()):
            seen.append(block)
    assert seen == [b"one", b"two"]


def test_closing_ahead_stops_its_thread() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x"

    blocks = ahead(endless(), depth=1)
    assert next(blocks) == b"x"
    assert any(t.name == "labinterp-csv" for t in threading.enumerate())
    blocks.close()  # type: ignore[attr-defined]
    assert not any(t.name == "labinterp-csv" for t in threading.enumerate())


# ----------------------------------------------------------------------- values by digit arithmetic
value_texts = st.one_of(
    st.from_regex(r"\A[0-9]{0,9}\.?[0-9]{0,9}\Z"),  # plain decimals (and "", ".", over 15 digits)
    st.decimals(min_value=0, max_value=10**6, allow_nan=False, places=6).map(str),
    st.floats(min_value=0, max_value=1e20, allow_nan=False).map(repr),  # 1e+16, 5e-324, 0.1
    st.sampled_from(["<0.5", ">= 7", " 4.0", "4.0 ", "+5", "-0", "1e3", "1_000", "\u0663", "inf", "NaN", "HEMOLYZED",
                     "0000000000000004.25", "4.", ".5", "12345678901234567", "1.2.3", "..5", "4..", "."]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(value_texts, min_size=1, max_size=40))
def test_digit_arithmetic_reads_values_as_the_text_rules_do(texts: list[str]) -> None:
    block = "".join(f"S,potassium,{t},mmol/L\n" for t in texts).encode()
    fields = bytefields.ByteFields(block, b",", 4)
    assert fields.regular
    read, expected = fields.numbers(2), Numbers.of(texts)
    assert read.bad.tolist() == expected.bad.tolist() and read.comparator.tolist() == expected.comparator.tolist()
    good = ~expected.bad
    assert read.value[good].tobytes() == expected.value[good].tobytes()  # bit for bit


def test_the_digit_arithmetic_check_can_fail() -> None:
    block = b"S,potassium,0.1,mmol/L\n"
    read = bytefields.ByteFields(block, b",", 4).numbers(2)
    assert read.value[0] == 0.1 and read.value[0] != 1 / 10.000000000000002


# ----------------------------------------------------------------------- the text cache
@pytest.mark.parametrize("uncached", [0, 3])
def test_value_texts_are_shortest_round_trip_and_no_value_is_empty(uncached: int) -> None:
    texts = csvrows.ValueTexts()
    texts.uncached_chunks = uncached
    assert texts([0.1, 2.2655821148759916, 1e16, float("nan")]) == ["0.1", "2.2655821148759916", "1e+16", ""]


@pytest.mark.parametrize("repeating", [False, True])
def test_values_that_do_not_repeat_skip_the_text_cache_with_the_same_answer(engine: Engine, repeating: bool,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    value = (lambda i: f"{4 + i % 7 / 10:.1f}") if repeating else (lambda i: f"{4 + i / 997:.6f}")
    data = ("specimen_id,analyte,value,unit\n"
            + "".join(f"S{i},potassium,{value(i)},mmol/L\n" for i in range(6000))).encode()
    expected = interpreted(engine, data, block_bytes=4000)
    monkeypatch.setattr(csvrows, "MAX_TEXTS", 400)
    job = CsvJob(ColumnarInterpreter(engine), io.BytesIO(data), block_bytes=4000)
    skipped = []
    original = job.value_texts

    def spy(values):  # type: ignore[no-untyped-def]
        skipped.append(original.uncached_chunks > 0)
        return original(values)

    job.value_texts = spy  # type: ignore[assignment]
    assert b"".join(job) == expected
    assert any(skipped) is not repeating
