"""CSV in, CSV out, streamed in blocks: shared by POST /v1/interpret/csv and `labinterp interpret`.

Each input row is written back as it came (its raw bytes, so other columns pass through
untouched), followed by the appended columns; derived rows follow the last row of their panel.
Blocks of plain lines are read with numpy on the bytes (bytefields); the others (quoted fields,
rows with the wrong number of fields, empty lines) with the csv module. Both readers give the
interpreter the same RowChunk, so both give the same answers.
"""

from __future__ import annotations

import csv
import gc
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import IO, Any

import numpy as np

from labinterp.core.columnar import (
    BEFORE_ERROR,
    EMPTY_LINE,
    OUTPUT_COLUMNS,
    PATIENT_COLUMNS,
    RANGE_COLUMNS,
    ChunkOutput,
    Coded,
    ColumnarInterpreter,
    RowChunk,
)
from labinterp.files.bytefields import ByteFields, Spellings, plain

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("age_years", "age_days", "sex", "specimen", *RANGE_COLUMNS)
BLOCK_BYTES = 1 << 18  # read at a time: about 7,500 rows of a typical file (1 MiB blocks: 4 % faster, 40 MiB more)
MAX_PANEL_BYTES = 16 << 20  # a "panel" larger than this is processed in pieces
PREFIX = "labinterp_"
NEWLINE = b"\r\n"  # RFC 4180
BOM = b"\xef\xbb\xbf"


_collector_lock = threading.Lock()
_collector_users = 0
_collector_was_enabled = True


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while one block is computed. A block allocates tens of
    thousands of short-lived objects (no cycles): collecting them cost a third of the time. Paused per
    block only, shared safely between threads (the last one out restores it)."""
    global _collector_users, _collector_was_enabled
    with _collector_lock:
        if _collector_users == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_users += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_users -= 1
            if _collector_users == 0 and _collector_was_enabled:
                gc.enable()


@dataclass
class _Rows:
    """Rows read from a block: the interpreter's input, each row's text as written (without its
    line end), fields beyond the header's, and how much of the block they took (bytes, lines)."""

    chunk: RowChunk
    raws: list[bytes]
    long_rows: dict[int, list[str]]
    used_bytes: int
    used_lines: int
    fields: ByteFields | None = None  # where the plain reader found each field


def _header_line(binary: IO[bytes], block_bytes: int) -> tuple[bytes, bytes]:
    """The first line (up to its CR, LF or CRLF) and what was read after it, read in blocks: a file
    whose lines end in CR alone has no LF for readline() to stop at."""
    data = b""
    while True:
        block = binary.read(block_bytes)
        data += block
        ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
        end = min(ends) if ends else -1
        if end >= 0 and (data[end:end + 1] == b"\n" or end + 1 < len(data) or not block):
            end += 2 if data[end:end + 2] == b"\r\n" else 1
            return data[:end], data[end:]
        if not block:
            return data, b""


def _last_run_start(values: list[str], end: int) -> int:
    """Start of the run of equal values that ends at index end - 1."""
    last = values[end - 1]
    i = end - 1
    while i > 0 and values[i - 1] == last:
        i -= 1
    return i


class CsvHeaderError(Exception):
    """The header row cannot be used: names what is missing or doubled."""


@dataclass
class Summary:
    rows: int = 0
    derived: int = 0
    abnormal: int = 0
    critical: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class CsvJob:
    """Reads the header at once (raising CsvHeaderError), then yields the output bytes block by block."""

    def __init__(self, interpreter: ColumnarInterpreter, binary: IO[bytes], block_bytes: int = BLOCK_BYTES,
                 progress: Callable[[Summary], None] | None = None):
        self.interpreter = interpreter
        self.binary = binary
        self.block_bytes = block_bytes
        self.progress = progress
        self.summary = Summary()
        first, self._pushback = _header_line(binary, block_bytes)
        text = (first[len(BOM):] if first.startswith(BOM) else first).decode("utf-8", "replace")
        if not text.strip():
            raise CsvHeaderError("the file is empty: the first line must name the columns "
                                 f"{', '.join(REQUIRED)}")
        self.sep = ";" if text.count(";") > text.count(",") else ","
        self.sep_bytes = self.sep.encode()
        header = next(csv.reader([text], delimiter=self.sep))
        names = [h.strip().lower() for h in header]
        missing = [c for c in REQUIRED if c not in names]
        doubled = sorted({c for c in (*REQUIRED, *OPTIONAL) if names.count(c) > 1})
        if missing or doubled:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if doubled:
                parts.append(f"column(s) named twice: {', '.join(doubled)}")
            raise CsvHeaderError("line 1 (header): " + "; ".join(parts) + f". Required: {', '.join(REQUIRED)}; "
                                 f"optional: {', '.join(OPTIONAL)}")
        self.header_text = text.rstrip("\r\n")
        self.width = len(header)
        self.index = {c: names.index(c) for c in (*REQUIRED, *OPTIONAL) if c in names}
        taken = set(names)
        self.appended = [PREFIX + c if c in taken else c for c in OUTPUT_COLUMNS]
        self.line = 1  # physical lines consumed so far (the header)
        self._tails: dict[int, bytes] = {}
        self._generation = interpreter.generation
        # the plain reader's spelling tables (values are read by digit arithmetic instead)
        self._spellings = {name: Spellings() for name in self.index if name != "value"}

    # ---------------------------------------------------------------- output
    def quote(self, field: str) -> str:
        if self.sep in field or '"' in field or "\n" in field or "\r" in field:
            return '"' + field.replace('"', '""') + '"'
        return field

    def render(self, fields: list[str]) -> str:
        return self.sep.join(map(self.quote, fields))

    def __iter__(self) -> Iterator[bytes]:
        yield (self.header_text + self.sep + self.render(self.appended)).encode("utf-8") + NEWLINE
        pending = self._pushback  # bytes read but not yet interpreted: the last, maybe unfinished, panel
        while True:
            block = self.binary.read(self.block_bytes)
            data = pending + block if pending else block
            final = not block
            if final:
                if not data:
                    return
                cut = len(data)
            else:
                # after the last line end; a CR at the very end may be the first half of a CRLF
                cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
                if cut == 0:
                    pending = data
                    continue
            complete = data[:cut]
            if not complete.isascii():  # valid UTF-8 stays as it is; other bytes become U+FFFD
                complete = complete.decode("utf-8", "replace").encode("utf-8")
            with _collector_paused():
                rows = self._read(complete, final)
                text = None if rows is None else self._write(rows)
            if rows is None:  # one unfinished panel so far: read on
                pending = data
                continue
            pending = complete[rows.used_bytes:] + data[cut:]
            self.line += rows.used_lines
            if text:
                yield text
            if self.progress is not None:
                self.progress(self.summary)
            if final and not pending:
                return

    # ---------------------------------------------------------------- input
    def _read(self, complete: bytes, final: bool) -> _Rows | None:
        """The rows of complete lines, but for the last panel, which may go on in the next block
        (all of them when final); None when the block holds one panel only, unfinished."""
        if final and not complete.endswith((b"\n", b"\r")):
            complete += b"\n"
        if plain(complete):
            fields = ByteFields(complete, self.sep_bytes, self.width)
            if fields.regular:
                return self._read_plain(fields, complete, final)
        return self._read_general(complete, final)

    def _read_plain(self, fields: ByteFields, complete: bytes, final: bool) -> _Rows | None:
        index = self.index
        new_panel = fields.differs_from_previous(index["specimen_id"])
        keep = fields.count
        if not final:
            keep = int(np.flatnonzero(new_panel)[-1])
            if keep == 0:
                if len(complete) < MAX_PANEL_BYTES:
                    return None
                keep = fields.count
        fields.limit(keep)
        used = int(fields.line_start[keep]) if keep < len(new_panel) else len(complete)
        spellings = self._spellings

        def coded(name: str) -> Coded | None:
            return fields.coded(index[name], spellings[name]) if name in index else None

        chunk = RowChunk(new_panel[:keep], fields.empty(index["specimen_id"]), fields.coded(index["analyte"],
                         spellings["analyte"]), fields.numbers(index["value"]),
                         fields.coded(index["unit"], spellings["unit"]),
                         np.arange(self.line + 1, self.line + 1 + keep, dtype=np.int64),
                         lambda column, rows: fields.texts(index[column], rows),
                         coded("age_years"), coded("age_days"), coded("sex"), coded("specimen"),
                         reference_low=coded("reference_low"), reference_high=coded("reference_high"),
                         reference_unit=coded("reference_unit"))
        lines = complete[:used]
        if b"\r" in lines:
            lines = lines.replace(b"\r\n", b"\n")
        return _Rows(chunk, lines.split(b"\n", keep)[:keep], {}, used, keep, fields)

    def _read_general(self, complete: bytes, final: bool) -> _Rows | None:
        """The csv module, row by row: quoted fields (over several lines too), rows with the wrong
        number of fields and empty lines, each reported and kept."""
        sep, width = self.sep, self.width
        physical = complete.splitlines(keepends=True)
        lines = [line.decode("utf-8") for line in physical]
        reader = csv.reader(lines, delimiter=sep)
        rows: list[list[str]] = []
        raws: list[str] = []
        starts: list[int] = []
        previous = 0
        for row in reader:
            rows.append(row)
            starts.append(previous)
            raws.append("".join(lines[previous:reader.line_num]).rstrip("\r\n"))
            previous = reader.line_num
        problems: dict[int, str] = {}
        long_rows: dict[int, list[str]] = {}
        for i, row in enumerate(rows):
            if len(row) == width:
                continue
            if not row or row == [""]:
                problems[i] = EMPTY_LINE
                raws[i] = sep * (width - 1)
            else:
                problems[i] = f"has {len(row)} fields, the header has {width}"
                if len(row) > width:
                    long_rows[i] = row[width:]
                raws[i] = (raws[i] + sep * (width - len(row)) if len(row) < width else self.render(row[:width]))
            rows[i] = (row + [""] * width)[:width]
        sids = [row[self.index["specimen_id"]] for row in rows]
        keep = len(rows)
        if not final:
            # the last row may be cut short inside a quoted field: it goes on with the last panel
            keep = _last_run_start(sids, len(sids) - 1) if len(sids) > 1 else 0
            if keep == 0:
                if len(complete) < MAX_PANEL_BYTES:
                    return None
                keep = len(rows)
        used_lines = starts[keep] if keep < len(rows) else len(physical)
        used = sum(map(len, physical[:used_lines]))
        cols = {name: list(map(itemgetter(i), rows[:keep])) for name, i in self.index.items()}
        chunk = RowChunk.of_columns(cols, [self.line + 1 + s for s in starts[:keep]],
                                    {i: p for i, p in problems.items() if i < keep})
        return _Rows(chunk, [r.encode("utf-8") for r in raws[:keep]],
                     {i: r for i, r in long_rows.items() if i < keep}, used, used_lines)

    # ---------------------------------------------------------------- output
    def _write(self, rows: _Rows) -> bytes:
        sep = self.sep_bytes
        chunk = rows.chunk
        out = self.interpreter.interpret(chunk)
        n = len(chunk)
        self._count(out, n)
        # each output row is three pieces joined once: its input text (as read), the canonical
        # value, and the other appended columns (one string per distinct verdict)
        nd = len(out.derived_after)
        pieces = np.empty((n + nd, 3), dtype=object)
        pieces[:n, 0] = rows.raws
        if nd:
            pieces[n:, 0] = self._derived_heads(rows, out)
        pieces[:, 1] = np.array(_encoded([self.sep + t for t in out.value_texts]), dtype=object)[out.value_codes]
        pieces[:, 2] = np.array([self._tail(k, out) for k in out.keys], dtype=object)[out.codes]
        before = self.sep * (BEFORE_ERROR + 1)
        after_error = self.sep * (len(OUTPUT_COLUMNS) - BEFORE_ERROR - 2)
        for r, message in out.errors.items():
            pieces[r, 1] = sep
            pieces[r, 2] = (before + self.quote(message) + after_error).encode("utf-8") + NEWLINE
        for i, extra in rows.long_rows.items():  # fields beyond the header go after the appended columns
            pieces[i, 2] = pieces[i, 2][:-len(NEWLINE)] + (self.sep + self.render(extra)).encode("utf-8") + NEWLINE
        if nd:
            after = out.derived_after
            position = np.arange(n) + np.searchsorted(after, np.arange(n), side="left")
            order = np.empty(n + nd, dtype=np.int64)
            order[position] = np.arange(n)
            order[after + 1 + np.arange(nd)] = n + np.arange(nd)
            pieces = pieces[order]
        return b"".join(pieces.ravel().tolist())

    def _tail(self, key: int, out: ChunkOutput) -> bytes:
        if self._generation != self.interpreter.generation:  # keys are only valid within one generation
            self._tails.clear()
            self._generation = self.interpreter.generation
        tail = self._tails.get(key)
        if tail is None:
            fields = [*out.fields[key][:BEFORE_ERROR], "", *out.fields[key][BEFORE_ERROR:]]  # error: empty
            tail = self._tails[key] = "".join(self.sep + self.quote(f) for f in fields).encode("utf-8") + NEWLINE
        return tail

    def _derived_heads(self, rows: _Rows, out: ChunkOutput) -> list[bytes]:
        """The input columns of derived rows: specimen_id and the panel's patient columns, analyte
        corrected_calcium, its value and unit; other columns empty."""
        after = out.derived_after.tolist()
        sid = self.index["specimen_id"]
        if rows.fields is not None:
            given: dict[str, Any] = {"specimen_id": rows.fields.raw(sid, after)}
        else:
            given = {"specimen_id": [self.quote(t).encode("utf-8") for t in rows.chunk.texts("specimen_id", after)]}
        given["value"] = _encoded(out.derived_value)
        given["analyte"] = repeat(b"corrected_calcium")
        given["unit"] = repeat(self.quote(out.derived_unit).encode("utf-8"))
        for name in PATIENT_COLUMNS:
            if name in self.index:
                texts = out.derived_patient[name]
                written = {t: self.quote(t).encode("utf-8") for t in set(texts)}
                given[name] = list(map(written.__getitem__, texts))
        by_position = {self.index[name]: values for name, values in given.items()}
        columns = [by_position.get(position, repeat(b"")) for position in range(self.width)]
        return list(map(self.sep_bytes.join, zip(*columns, strict=False)))  # the constant columns repeat()

    def _count(self, out: ChunkOutput, rows: int) -> None:
        s = self.summary
        s.rows += rows
        s.derived += len(out.derived_after)
        s.abnormal += out.abnormal
        s.critical += out.critical
        s.errors += len(out.errors)


def ahead(blocks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """The blocks, computed in a thread up to `depth` ahead of the consumer: writing one block to a
    file or socket (which releases the GIL) overlaps computing the next. An error in the thread is
    raised here; closing this iterator stops the thread after its current block."""
    handoff: queue.Queue[tuple[bytes | None, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bytes | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not put((block, None)):
                    return
            put((None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put((None, exc))

    thread = threading.Thread(target=produce, name="labinterp-csv", daemon=True)
    thread.start()
    try:
        while True:
            block, error = handoff.get()
            if error is not None:
                raise error
            if block is None:
                return
            yield block
    finally:
        stop.set()
        thread.join()


def _encoded(texts: list[str]) -> list[bytes]:
    """Each text as UTF-8: one encode of the joined texts when none holds a line feed."""
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1 or not texts:
        return [t.encode("utf-8") for t in texts]
    return joined.encode("utf-8").split(b"\n")
