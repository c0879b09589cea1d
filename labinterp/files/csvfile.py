"""CSV in, CSV out, streamed in blocks: shared by POST /v1/interpret/csv and `labinterp interpret`; its reader
(CsvReader) also reads the files of POST /v1/verify/csv and `labinterp verify`.

Each input line is one row, written back as it came (its raw bytes, so other columns pass through
untouched), followed by the appended columns; derived rows follow the last row of their panel.
Blocks of plain lines are read with numpy on the bytes (bytefields); the others (quoted fields,
rows with the wrong number of fields, empty lines) with the csv module. Both readers give the
interpreter the same RowChunk, so both give the same answers. A quote left open at the end of a
line is that row's error, never a field that swallows the rows after it; lines, panels and
columns are bounded (CsvLimits), so time is linear and memory flat whatever the file's shape.
"""

from __future__ import annotations

import csv
import gc
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import IO, Any

import numpy as np

from labinterp.config import load_config
from labinterp.core.columnar import (
    EMPTY_LINE,
    PATIENT_COLUMNS,
    RANGE_COLUMNS,
    ChunkOutput,
    Coded,
    ColumnarInterpreter,
    RowChunk,
)
from labinterp.files.bytefields import BoolArray, ByteFields, Spellings, plain
from labinterp.render.csvrows import BEFORE_ERROR, OUTPUT_COLUMNS, ValueTexts, fields

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("age_years", "age_days", "sex", "specimen", *RANGE_COLUMNS)
CHUNK_COLUMNS = (*REQUIRED, *PATIENT_COLUMNS, "specimen", *RANGE_COLUMNS)  # the columns RowChunk has a field for
BLOCK_BYTES = 1 << 18  # read at a time: about 7,500 rows of a typical file (1 MiB blocks: 4 % faster, 40 MiB more)
PREFIX = "labinterp_"
NEWLINE = b"\r\n"  # RFC 4180
BOM = b"\xef\xbb\xbf"
# stands in for a line over the limit: never held, never read (the NUL sends it to the csv module)
TOO_LONG = b"\0labinterp: line too long\0"
UNCLOSED_QUOTE = ("a quoted field opened on this line is not closed (an unbalanced quote): not interpreted; the "
                  "lines after it are read as rows of their own")


@dataclass(frozen=True)
class CsvLimits:
    """What one file may hold (LABINTERP_CSV_*; docs/operations.md, "Limits")."""

    max_line_bytes: int
    max_columns: int
    max_panel_rows: int

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None = None) -> CsvLimits:
        settings = load_config() if settings is None else settings
        return cls(int(settings["CSV_MAX_LINE_BYTES"]), int(settings["CSV_MAX_COLUMNS"]),
                   int(settings["CSV_MAX_PANEL_ROWS"]))


_collector_lock = threading.Lock()
_collector_users = 0
_collector_was_enabled = True


@contextmanager
def collector_paused() -> Iterator[None]:
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
class Rows:
    """Rows read from a block: the interpreter's input, each row's text as written (without its
    line end), fields beyond the header's (written back after the appended columns), and how much
    of the block they took (bytes, lines)."""

    chunk: RowChunk
    raws: list[bytes]
    long_rows: dict[int, str]
    used_bytes: int
    used_lines: int
    fields: ByteFields | None = None  # where the plain reader found each field
    own_errors: dict[int, str] = field(default_factory=dict)  # errors that replace the interpreter's
    extra: dict[str, Coded] = field(default_factory=dict)  # the columns read beyond RowChunk's (CsvReader.extra)


def _one_line(line: str, sep: str) -> tuple[list[str] | None, bool]:
    """A line's fields read on their own, and whether a quoted field is still open at its end (None:
    not readable)."""
    try:
        reader = csv.reader((line, ""), delimiter=sep)
        return next(reader), reader.line_num > 1
    except csv.Error:
        return None, False


def _line_end(data: bytes, start: int = 0) -> int:
    """Position of the first CR or LF at or after start, or -1."""
    ends = [i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0]
    return min(ends) if ends else -1


def _header_line(binary: IO[bytes], block_bytes: int, max_bytes: int) -> tuple[bytes, bytes]:
    """The first line (up to its CR, LF or CRLF) and what was read after it, read in blocks: a file
    whose lines end in CR alone has no LF for readline() to stop at. A header longer than max_bytes
    is refused without reading the rest of it."""
    data = b""
    while True:
        block = binary.read(block_bytes)
        data += block
        end = _line_end(data)
        if (end if end >= 0 else len(data)) > max_bytes + len(BOM):
            raise CsvHeaderError(f"line 1 (header) is longer than {max_bytes:,} bytes (LABINTERP_CSV_MAX_LINE_BYTES): "
                                 "the first line must name the columns")
        if end >= 0 and (data[end:end + 1] == b"\n" or end + 1 < len(data) or not block):
            end += 2 if data[end:end + 2] == b"\r\n" else 1
            return data[:end], data[end:]
        if not block:
            return data, b""


class _BoundedLines:
    """The body after the header, read in whole lines, each line longer than the limit replaced by
    TOO_LONG: a line is never held whole, however long, and the csv module never meets a field
    longer than its own limit. read() gives b"" at the end of the file only."""

    def __init__(self, pushback: bytes, binary: IO[bytes], limit: int):
        self.pushback, self.binary, self.limit = pushback, binary, limit
        self.partial = b""  # the line begun but not ended yet (at most `limit` bytes)
        self.skipping = False  # inside a line over the limit: dropped up to its line end
        self.exhausted = False  # the end of the file was read

    def read(self, size: int) -> bytes:
        """Whole lines, about `size` bytes of them (more when a line ends later); b"" at the end."""
        out: list[bytes] = []
        got = 0
        while got < size and not self.exhausted:
            block, self.pushback = (self.pushback, b"") if self.pushback else (self.binary.read(size - got), b"")
            if not block:
                self.exhausted = True
                last, self.partial = (TOO_LONG if self.skipping else self.partial), b""
                self.skipping = False
            else:
                last = self._bounded(block)
            out.append(last)
            got += len(last)
        return b"".join(out)

    def _bounded(self, block: bytes) -> bytes:
        data = self.partial + block if self.partial else block
        pieces: list[bytes] = []
        start = 0
        if self.skipping:
            start = _line_end(data)
            if start < 0:
                return b""
            pieces.append(TOO_LONG)
            self.skipping = False
        raw = np.frombuffer(data, dtype=np.uint8)[start:]
        ends = np.flatnonzero((raw == 10) | (raw == 13)) + start
        tail = start
        if len(ends):
            begins = np.empty(len(ends), dtype=np.int64)
            begins[0] = start
            begins[1:] = ends[:-1] + 1
            position = start
            for k in np.flatnonzero(ends - begins > self.limit).tolist():  # rare: only lines over the limit
                pieces += [data[position:int(begins[k])], TOO_LONG]
                position = int(ends[k])
            tail = int(ends[-1]) + 1
            pieces.append(data[position:tail])
        if len(data) - tail > self.limit:
            self.skipping, self.partial = True, b""
        else:
            self.partial = data[tail:]
        return b"".join(pieces)


# a row read by the csv module: its fields (the header's width at most), its first line, the line
# after its last, its problem, the fields beyond the header's width (as text), how many fields it had
Record = tuple[list[str], int, int, str, "str | None", int]


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


class CsvReader:
    """A CSV file's header, read at once (raising CsvHeaderError), then its body in blocks of whole panels
    (`blocks()`): the reader of both file paths, interpret (CsvJob) and verify (files/verifycsv.py).

    The columns read are the required ones and `optional`; those the interpreter does not read (RowChunk has no
    field for them) come with each block as `Rows.extra`, coded like the others."""

    def __init__(self, binary: IO[bytes], optional: tuple[str, ...] = OPTIONAL, block_bytes: int = BLOCK_BYTES,
                 limits: CsvLimits | None = None):
        self.binary = binary
        self.block_bytes = block_bytes
        self.limits = limits = CsvLimits.of() if limits is None else limits
        first, pushback = _header_line(binary, block_bytes, limits.max_line_bytes)
        self._source = _BoundedLines(pushback, binary, limits.max_line_bytes)
        text = (first[len(BOM):] if first.startswith(BOM) else first).decode("utf-8", "replace")
        if not text.strip():
            raise CsvHeaderError("the file is empty: the first line must name the columns "
                                 f"{', '.join(REQUIRED)}")
        self.sep = ";" if text.count(";") > text.count(",") else ","
        self.sep_bytes = self.sep.encode()
        line = text.rstrip("\r\n")
        reader = csv.reader((line, ""), delimiter=self.sep)
        header = next(reader)
        if reader.line_num > 1:
            raise CsvHeaderError("line 1 (header): a quoted name is not closed on its line")
        if len(header) > limits.max_columns:
            raise CsvHeaderError(f"line 1 (header) has {len(header):,} columns, at most {limits.max_columns:,} are "
                                 "read (LABINTERP_CSV_MAX_COLUMNS)")
        names = [h.strip().lower() for h in header]
        missing = [c for c in REQUIRED if c not in names]
        doubled = sorted({c for c in (*REQUIRED, *optional) if names.count(c) > 1})
        if missing or doubled:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if doubled:
                parts.append(f"column(s) named twice: {', '.join(doubled)}")
            raise CsvHeaderError("line 1 (header): " + "; ".join(parts) + f". Required: {', '.join(REQUIRED)}; "
                                 f"optional: {', '.join(optional)}")
        self.header_text = line
        self.header = header
        self.width = len(header)
        self.index = {c: names.index(c) for c in (*REQUIRED, *optional) if c in names}
        self.extra = [c for c in optional if c in self.index and c not in CHUNK_COLUMNS]
        self.line = 1  # physical lines consumed so far (the header)
        # the plain reader's spelling tables (values are read by digit arithmetic instead)
        self._spellings = {name: Spellings() for name in self.index if name != "value"}
        self._oversized: str | None = None  # specimen_id of the last panel written, when it went over the limit
        self._panel_problem = (f"more than {limits.max_panel_rows:,} rows in one panel (adjacent rows with this "
                               "specimen_id; LABINTERP_CSV_MAX_PANEL_ROWS): not interpreted")

    def appended(self, columns: tuple[str, ...]) -> list[str]:
        """The names of columns appended to the output: prefixed where the header has the name already."""
        taken = {h.strip().lower() for h in self.header}
        return [PREFIX + c if c in taken else c for c in columns]

    def quote(self, field: str) -> str:
        if self.sep in field or '"' in field or "\n" in field or "\r" in field:
            return '"' + field.replace('"', '""') + '"'
        return field

    def render(self, fields: list[str]) -> str:
        return self.sep.join(map(self.quote, fields))

    def blocks(self) -> Iterator[Rows]:
        """The body's rows, block by block, each block ending with a whole panel (the last one at the end)."""
        pending = b""  # bytes read but not yet handed out: the last, maybe unfinished, panel
        while True:
            # while one unfinished panel is held, each read is as large as it: the panel is read
            # again a bounded number of times (linear), and it is bounded by max_panel_rows lines
            block = self._source.read(max(self.block_bytes, len(pending)))
            data = pending + block if pending else block
            final = self._source.exhausted
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
            with collector_paused():
                rows = self._read(complete, final)
            if rows is None:  # one unfinished panel so far: read on
                pending = data
                continue
            pending = complete[rows.used_bytes:] + data[cut:]
            self.line += rows.used_lines
            yield rows
            if final and not pending:
                return

    # ---------------------------------------------------------------- input
    def _read(self, complete: bytes, final: bool) -> Rows | None:
        """The rows of complete lines, but for the last panel, which may go on in the next block
        (all of them when final); None when the block holds one panel only, unfinished."""
        if final and not complete.endswith((b"\n", b"\r")):
            complete += b"\n"
        # counted first (no allocation): a block of lines with other numbers of fields would make
        # ByteFields list every delimiter of it, eight bytes each
        if plain(complete) and complete.count(self.sep_bytes) == complete.count(b"\n") * (self.width - 1):
            fields = ByteFields(complete, self.sep_bytes, self.width)
            if fields.regular:
                return self._read_plain(fields, complete, final)
        return self._read_general(complete, final)

    def _panels(self, new_panel: BoolArray, first_sid: Callable[[], str], last_sid: Callable[[int], str],
                final: bool) -> tuple[int, dict[int, str]] | None:
        """How many rows to interpret now (all but the last panel, which may go on in the next
        block; all when final), and the problem of each row of a panel over the limit; None: one
        panel only, unfinished and within the limit, so read on."""
        count = len(new_panel)
        starts = np.flatnonzero(new_panel)
        bounds = np.append(starts, count)
        sizes = np.diff(bounds)
        limit = self.limits.max_panel_rows
        continued = self._oversized is not None and first_sid() == self._oversized
        over = sizes > limit
        if continued:
            over[0] = True  # the rest of a panel already over the limit
        keep = count
        if not final and not over[-1]:
            keep = int(starts[-1])
            if keep == 0:
                return None
        problems: dict[int, str] = {}
        for p in np.flatnonzero(over).tolist():
            problems.update(dict.fromkeys(range(int(bounds[p]), min(int(bounds[p + 1]), keep)), self._panel_problem))
        # the last panel written may go on in the next block: remember it when it is over the limit
        last = int(np.searchsorted(starts, keep, side="left")) - 1
        self._oversized = last_sid(int(starts[last])) if keep and over[last] else None
        return keep, problems

    def _read_plain(self, fields: ByteFields, complete: bytes, final: bool) -> Rows | None:
        index = self.index
        sid = index["specimen_id"]
        new_panel = fields.differs_from_previous(sid)
        panels = self._panels(new_panel, lambda: fields.texts(sid, [0])[0],
                              lambda row: fields.texts(sid, [row])[0], final)
        if panels is None:
            return None
        keep, problems = panels
        fields.limit(keep)
        used = int(fields.line_start[keep]) if keep < len(new_panel) else len(complete)
        spellings = self._spellings

        def coded(name: str) -> Coded | None:
            return fields.coded(index[name], spellings[name]) if name in index else None

        chunk = RowChunk(new_panel[:keep], fields.empty(sid), fields.coded(index["analyte"], spellings["analyte"]),
                         fields.numbers(index["value"]), fields.coded(index["unit"], spellings["unit"]),
                         np.arange(self.line + 1, self.line + 1 + keep, dtype=np.int64),
                         lambda column, rows: fields.texts(index[column], rows),
                         coded("age_years"), coded("age_days"), coded("sex"), coded("specimen"),
                         reference_low=coded("reference_low"), reference_high=coded("reference_high"),
                         reference_unit=coded("reference_unit"), row_problems=problems)
        extra = {name: fields.coded(index[name], spellings[name]) for name in self.extra}
        lines = complete[:used]
        if b"\r" in lines:
            lines = lines.replace(b"\r\n", b"\n")
        # a panel over the limit is read in pieces: its rows' errors must not depend on where they were cut
        own = {i: f"line {self.line + 1 + i}: {problem}" for i, problem in problems.items()}
        return Rows(chunk, lines.split(b"\n", keep)[:keep], {}, used, keep, fields, own, extra)

    def _read_general(self, complete: bytes, final: bool) -> Rows | None:
        """The csv module: quoted fields, rows with the wrong number of fields, empty lines, quotes
        left open and lines over the limit, each reported and kept."""
        sep, width = self.sep, self.width
        physical = complete.splitlines(keepends=True)
        lines = [line.decode("utf-8") for line in physical]
        records = self._records(lines, final)
        undecided = bool(records) and records[-1][2] > len(lines)  # a field that may close in the next block
        problems: dict[int, str] = {}
        long_rows: dict[int, str] = {}
        own_errors: dict[int, str] = {}
        rows: list[list[str]] = []
        raws: list[bytes] = []  # as written (valid UTF-8 by now), or written again
        for i, (row, start, end, problem, extra, count) in enumerate(records):
            raws.append(b"".join(physical[start:min(end, len(lines))]).rstrip(b"\r\n"))
            if problem:
                problems[i] = problem
            if raws[i] == TOO_LONG:  # nothing of it was read: its error is this alone
                problems[i] = own_errors[i] = (f"line {self.line + 1 + start}: longer than "
                                               f"{self.limits.max_line_bytes:,} bytes (LABINTERP_CSV_MAX_LINE_BYTES): "
                                               "not read")
                row, extra, count = [], None, 0
            if count == width and i not in problems:
                rows.append(row)
                continue
            if not row or row == [""]:
                problems.setdefault(i, EMPTY_LINE)
                raws[i] = (sep * (width - 1)).encode()
            else:
                problems.setdefault(i, f"has {count} fields, the header has {width}")
                if extra is not None:
                    long_rows[i] = extra
                if count < width and not problem:
                    raws[i] += (sep * (width - count)).encode()
                else:  # written again, quoted: a quote left open must not open a field in the answer
                    raws[i] = self.render((row + [""] * width)[:width]).encode("utf-8")
            rows.append((row + [""] * width)[:width])
        sid = self.index["specimen_id"]
        sids = [row[sid] for row in rows]
        new_panel = np.ones(len(rows), dtype=bool)
        if len(rows) > 1:
            new_panel[1:] = np.array(sids[1:], dtype=object) != np.array(sids[:-1], dtype=object)
        if undecided:  # held, with the panel before it (it may belong to it)
            new_panel = new_panel[:-1]
        panels = self._panels(new_panel, lambda: sids[0], sids.__getitem__, final) if len(new_panel) else None
        if panels is None:
            return None
        keep, oversized = panels
        for i, problem in oversized.items():  # read in pieces: errors that do not depend on where they were cut
            if problems.get(i) != EMPTY_LINE and i not in own_errors:
                problems[i] = f"{problems[i]}; {problem}" if i in problems else problem
                own_errors[i] = f"line {self.line + 1 + records[i][1]}: {problems[i]}"
        used_lines = records[keep - 1][2] if keep else 0
        used = sum(map(len, physical[:used_lines]))
        cols = {name: list(map(itemgetter(i), rows[:keep])) for name, i in self.index.items()}
        chunk = RowChunk.of_columns(cols, [self.line + 1 + record[1] for record in records[:keep]],
                                    {i: p for i, p in problems.items() if i < keep})
        return Rows(chunk, raws[:keep],
                     {i: r for i, r in long_rows.items() if i < keep}, used, used_lines,
                     own_errors={i: e for i, e in own_errors.items() if i < keep},
                     extra={name: Coded.of(cols[name]) for name in self.extra})

    def _record(self, row: list[str], start: int, end: int, problem: str) -> Record:
        """A row read, cut to the header's width at once (a line of many short fields is many
        objects): the fields beyond it kept as text, with how many fields it had."""
        if len(row) <= self.width:
            return row, start, end, problem, None, len(row)
        return row[:self.width], start, end, problem, self.render(row[self.width:]), len(row)

    def _records(self, lines: list[str], final: bool) -> list[Record]:
        """The rows of the lines, each with its first line, the line after its last, and its problem.
        A quoted field may run over several lines (RFC 4180), but only over lines without a
        delimiter or quote, max_line_bytes in all: a row (a result) is never taken into a field. A
        quote that does not close so is the problem of its line, and the next line is read as a row."""
        records: list[Record] = []
        try:
            reader = csv.reader(chain(lines, ("",)), delimiter=self.sep)
            for row in reader:
                if reader.line_num != len(records) + 1:
                    break
                records.append(self._record(row, len(records), len(records) + 1, ""))
            if len(records) == len(lines) + 1 and not records[-1][0]:
                return records[:-1]  # the sentinel's empty row: every line was one row
        except csv.Error:  # a field over the csv module's own limit
            pass
        return self._records_line_by_line(lines, final)

    def _records_line_by_line(self, lines: list[str], final: bool) -> list[Record]:
        sep, limit = self.sep, self.limits.max_line_bytes
        records: list[Record] = []
        i, n = 0, len(lines)
        while i < n:
            row, is_open = _one_line(lines[i], sep)
            if not is_open:
                records.append(self._record(row or [], i, i + 1, "" if row is not None else "not readable as CSV"))
                i += 1
                continue
            # the field may go on over lines without a delimiter or quote, up to one that closes it
            j, size = i + 1, len(lines[i])
            while j < n and sep not in lines[j] and '"' not in lines[j] and size <= limit:
                size += len(lines[j])
                j += 1
            if j == n and not final and size <= limit:
                records.append(self._record(row or [], i, n + 1, ""))  # may close in the next block: end past n
                break
            whole: list[str] | None = None
            if j < n and size + len(lines[j]) <= limit and '"' in lines[j].split(sep, 1)[0]:
                try:
                    reader = csv.reader(chain(lines[i:j + 1], ("",)), delimiter=sep)
                    whole = next(reader)
                    if reader.line_num != j + 1 - i:
                        whole = None
                except csv.Error:
                    whole = None
            if whole is not None:
                records.append(self._record(whole, i, j + 1, ""))
                i = j + 1
            else:
                records.append(self._record(row or [], i, i + 1, UNCLOSED_QUOTE))
                i += 1
        return records

class CsvJob(CsvReader):
    """Interprets a CSV file: reads the header at once (raising CsvHeaderError), then yields the output bytes
    block by block."""

    def __init__(self, interpreter: ColumnarInterpreter, binary: IO[bytes], block_bytes: int = BLOCK_BYTES,
                 progress: Callable[[Summary], None] | None = None, limits: CsvLimits | None = None):
        super().__init__(binary, OPTIONAL, block_bytes, limits)
        self.interpreter = interpreter
        self.progress = progress
        self.summary = Summary()
        self.appended_names = self.appended(OUTPUT_COLUMNS)
        self._tails: dict[int, bytes] = {}
        self.value_texts = ValueTexts()  # float -> shortest round-trip text (values repeat across chunks)
        self._generation = interpreter.generation

    def __iter__(self) -> Iterator[bytes]:
        yield (self.header_text + self.sep + self.render(self.appended_names)).encode("utf-8") + NEWLINE
        for rows in self.blocks():
            with collector_paused():
                text = self._write(rows)
            if text:
                yield text
            if self.progress is not None:
                self.progress(self.summary)

    # ---------------------------------------------------------------- output
    def _write(self, rows: Rows) -> bytes:
        sep = self.sep_bytes
        chunk = rows.chunk
        if len(rows.own_errors) == len(chunk):  # e.g. the rows of a panel over the limit: nothing to interpret
            return self._write_errors(rows)
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
        value_texts = self.value_texts(out.values)
        pieces[:, 1] = np.array(_encoded([self.sep + t for t in value_texts]), dtype=object)[out.value_codes]
        pieces[:, 2] = np.array([self._tail(k, out) for k in out.keys], dtype=object)[out.codes]
        before = self.sep * (BEFORE_ERROR + 1)
        after_error = self.sep * (len(OUTPUT_COLUMNS) - BEFORE_ERROR - 2)
        for r, message in out.errors.items():
            message = rows.own_errors.get(r, message)
            pieces[r, 1] = sep
            pieces[r, 2] = (before + self.quote(message) + after_error).encode("utf-8") + NEWLINE
        for i, extra in rows.long_rows.items():  # fields beyond the header go after the appended columns
            pieces[i, 2] = pieces[i, 2][:-len(NEWLINE)] + (self.sep + extra).encode("utf-8") + NEWLINE
        if nd:
            after = out.derived_after
            position = np.arange(n) + np.searchsorted(after, np.arange(n), side="left")
            order = np.empty(n + nd, dtype=np.int64)
            order[position] = np.arange(n)
            order[after + 1 + np.arange(nd)] = n + np.arange(nd)
            pieces = pieces[order]
        return b"".join(pieces.ravel().tolist())

    def _write_errors(self, rows: Rows) -> bytes:
        before = self.sep * (BEFORE_ERROR + 2)  # the canonical value and the verdict fields, empty
        after = self.sep * (len(OUTPUT_COLUMNS) - BEFORE_ERROR - 2)
        s = self.summary
        s.rows += len(rows.raws)
        s.errors += len(rows.raws)
        extra = {i: self.sep + e for i, e in rows.long_rows.items()}  # fields beyond the header's
        return b"".join(raw + (before + self.quote(rows.own_errors[i]) + after + extra.get(i, "")).encode("utf-8")
                        + NEWLINE for i, raw in enumerate(rows.raws))

    def _tail(self, key: int, out: ChunkOutput) -> bytes:
        if self._generation != self.interpreter.generation:  # keys are only valid within one generation
            self._tails.clear()
            self._generation = self.interpreter.generation
        tail = self._tails.get(key)
        if tail is None:
            written = fields(out.verdicts[key])
            columns = [*written[:BEFORE_ERROR], "", *written[BEFORE_ERROR:]]  # error: empty
            tail = self._tails[key] = "".join(self.sep + self.quote(f) for f in columns).encode("utf-8") + NEWLINE
        return tail

    def _derived_heads(self, rows: Rows, out: ChunkOutput) -> list[bytes]:
        """The input columns of derived rows: specimen_id and the panel's patient columns, analyte
        corrected_calcium, its value and unit; other columns empty."""
        after = out.derived_after.tolist()
        sid = self.index["specimen_id"]
        if rows.fields is not None:
            given: dict[str, Any] = {"specimen_id": rows.fields.raw(sid, after)}
        else:
            given = {"specimen_id": [self.quote(t).encode("utf-8") for t in rows.chunk.texts("specimen_id", after)]}
        given["value"] = _encoded(self.value_texts(out.derived_values))
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
