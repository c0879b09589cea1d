"""CSV in, CSV out, streamed in chunks: shared by POST /v1/interpret/csv and `labinterp interpret`.

Each input row is written back as it came (its raw text, so other columns pass through
untouched), followed by the appended columns; derived rows follow the last row of their panel.
"""

from __future__ import annotations

import csv
import gc
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from labinterp.core.columnar import BEFORE_ERROR, EMPTY_LINE, OUTPUT_COLUMNS, ChunkOutput, ColumnarInterpreter, RowChunk

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("age_years", "age_days", "sex", "specimen")
CHUNK_ROWS = 20_000
MAX_PANEL_ROWS = 10 * CHUNK_ROWS  # a "panel" larger than this is processed in pieces
PREFIX = "labinterp_"
NEWLINE = "\r\n"  # RFC 4180


_collector_lock = threading.Lock()
_collector_users = 0
_collector_was_enabled = True


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while one chunk is computed. A chunk allocates tens of
    thousands of short-lived lists (no cycles): collecting them cost a third of the time. Paused per
    chunk only, shared safely between threads (the last one out restores it)."""
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


def _without_line_ends(lines: list[str]) -> list[str]:
    """Each line without its line end: one split of the joined text when every line ends alike."""
    text = "".join(lines)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\r" not in text:
        parts = text.split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        if len(parts) == len(lines):
            return parts
    return [line.rstrip("\r\n") for line in lines]


@dataclass
class _Parsed:
    """One chunk read: columns by name, raw row texts, first line of each row, row problems."""

    cols: dict[str, list[str]]
    raws: list[str]
    starts: list[int]
    problems: dict[int, str]
    long_rows: dict[int, list[str]]

    def keep(self, count: int) -> None:
        """Keep the first `count` rows only."""
        self.cols = {name: values[:count] for name, values in self.cols.items()}
        self.raws, self.starts = self.raws[:count], self.starts[:count]
        self.problems = {i: p for i, p in self.problems.items() if i < count}
        self.long_rows = {i: r for i, r in self.long_rows.items() if i < count}


def _last_run_start(values: list[str], end: int) -> int:
    """Start of the run of equal values that ends at index end - 1 (the last complete row)."""
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


def text_stream(binary: IO[bytes]) -> io.TextIOWrapper:
    """UTF-8 with or without a BOM; undecodable bytes become U+FFFD (that row's value or unit is
    then refused with its line number) rather than stopping a file half-written."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")


class CsvJob:
    """Reads the header at once (raising CsvHeaderError), then yields the output text chunk by chunk."""

    def __init__(self, interpreter: ColumnarInterpreter, text: IO[str], chunk_rows: int = CHUNK_ROWS,
                 progress: Callable[[Summary], None] | None = None):
        self.interpreter = interpreter
        self.text = text
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.summary = Summary()
        first = text.readline()
        if not first.strip():
            raise CsvHeaderError("the file is empty: the first line must name the columns "
                                 f"{', '.join(REQUIRED)}")
        self.sep = ";" if first.count(";") > first.count(",") else ","
        header = next(csv.reader([first], delimiter=self.sep))
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
        self.header_text = first.rstrip("\r\n")
        self.width = len(header)
        self.index = {c: names.index(c) for c in (*REQUIRED, *OPTIONAL) if c in names}
        taken = set(names)
        self.appended = [PREFIX + c if c in taken else c for c in OUTPUT_COLUMNS]
        self.line = 1  # physical lines consumed so far (the header)
        self._tails: dict[int, str] = {}
        self._generation = interpreter.generation

    # ---------------------------------------------------------------- output
    def quote(self, field: str) -> str:
        if self.sep in field or '"' in field or "\n" in field or "\r" in field:
            return '"' + field.replace('"', '""') + '"'
        return field

    def render(self, fields: list[str]) -> str:
        return self.sep.join(map(self.quote, fields))

    def __iter__(self) -> Iterator[str]:
        yield self.header_text + self.sep + self.render(self.appended) + NEWLINE
        carry: list[str] = []  # raw lines of the last, maybe unfinished, panel
        carry_line = self.line + 1
        text: str | None
        at_end = False
        while not at_end:
            lines = list(islice(self.text, self.chunk_rows))
            at_end = len(lines) < self.chunk_rows
            first_line = carry_line if carry else self.line + 1
            self.line += len(lines)
            lines = carry + lines
            if not lines:
                break
            with _collector_paused():
                text, carry, carry_line = self._step(lines, first_line, at_end)
            if text is None:
                continue
            yield text
            if self.progress is not None:
                self.progress(self.summary)

    def _step(self, lines: list[str], first_line: int, at_end: bool) -> tuple[str | None, list[str], int]:
        """Output text for the complete panels in lines, and the lines (with their first line number)
        carried to the next chunk; text None: one unfinished panel so far, read on."""
        parsed = self._parse(lines)
        carry: list[str] = []
        carry_line = 0
        if not at_end:
            # the last row may be cut short inside a quoted field: it goes on with the last panel
            sids = parsed.cols["specimen_id"]
            cut = _last_run_start(sids, len(sids) - 1) if len(sids) > 1 else 0
            if cut == 0 and len(lines) < MAX_PANEL_ROWS:
                return None, lines, first_line
            if cut > 0:
                carry, carry_line = lines[parsed.starts[cut]:], first_line + parsed.starts[cut]
                parsed.keep(cut)
        return self._chunk(parsed, [first_line + s for s in parsed.starts]), carry, carry_line

    def _parse(self, lines: list[str]) -> _Parsed:
        """Columns, each row's raw text (without its line end) and the index of its first line.

        Fast path: no quote anywhere and every line with exactly the header's number of
        delimiters, so one split of the chunk gives every field; else the csv module, row by row."""
        sep, width = self.sep, self.width
        text = "".join(lines)
        if '"' not in text:
            flat = text.replace("\r\n", "\n") if "\r" in text else text
            if "\r" not in flat:
                raws = flat.split("\n")
                if raws and raws[-1] == "":
                    raws.pop()
                if len(raws) == len(lines) and bool(
                        (np.strings.count(np.array(raws, dtype=str), sep) == width - 1).all()):
                    fields = (flat[:-1] if flat.endswith("\n") else flat).replace("\n", sep).split(sep)
                    cols = {name: fields[i::width] for name, i in self.index.items()}
                    return _Parsed(cols, raws, list(range(len(lines))), {}, {})
        rows = list(csv.reader(lines, delimiter=sep))
        if len(rows) == len(lines):
            raws, starts = _without_line_ends(lines), list(range(len(lines)))
        else:  # a quoted field spans lines: map rows to their lines one by one
            reader = csv.reader(lines, delimiter=sep)
            rows, raws, starts = [], [], []
            previous = 0
            for row in reader:
                rows.append(row)
                starts.append(previous)
                raws.append("".join(lines[previous:reader.line_num]).rstrip("\r\n"))
                previous = reader.line_num
        problems: dict[int, str] = {}
        long_rows: dict[int, list[str]] = {}
        if set(map(len, rows)) != {width}:
            fixed = []
            for i, row in enumerate(rows):
                if len(row) == width:
                    fixed.append(row)
                    continue
                if not row or row == [""]:
                    problems[i] = EMPTY_LINE
                    raws[i] = sep * (width - 1)
                else:
                    problems[i] = f"has {len(row)} fields, the header has {width}"
                    if len(row) > width:
                        long_rows[i] = row[width:]
                    raws[i] = (raws[i] + sep * (width - len(row)) if len(row) < width
                               else self.render(row[:width]))
                fixed.append((row + [""] * width)[:width])
            rows = fixed
        cols = {name: list(map(itemgetter(i), rows)) for name, i in self.index.items()}
        return _Parsed(cols, raws, starts, problems, long_rows)

    def _chunk(self, parsed: _Parsed, lines: list[int]) -> str:
        sep = self.sep
        cols, raws, problems, long_rows = parsed.cols, parsed.raws, parsed.problems, parsed.long_rows
        chunk = RowChunk(cols["specimen_id"], cols["analyte"], cols["value"], cols["unit"], lines,
                         cols.get("age_years"), cols.get("age_days"), cols.get("sex"), cols.get("specimen"),
                         problems)
        out = self.interpreter.interpret(chunk)
        n = len(raws)
        self._count(out, n)
        # each output row is three pieces joined once: its input text (as read), the canonical
        # value, and the other appended columns (one string per distinct verdict)
        nd = len(out.derived_after)
        pieces = np.empty((n + nd, 3), dtype=object)
        pieces[:n, 0] = raws
        if nd:
            pieces[n:, 0] = self._derived_heads(cols, out)
        pieces[:, 1] = np.array([sep + t for t in out.value_texts], dtype=object)[out.value_codes]
        pieces[:, 2] = np.array([self._tail(k, out) for k in out.keys], dtype=object)[out.codes]
        before, after_error = sep * (BEFORE_ERROR + 1), sep * (len(OUTPUT_COLUMNS) - BEFORE_ERROR - 2)
        for r, message in out.errors.items():
            pieces[r, 1] = sep
            pieces[r, 2] = before + self.quote(message) + after_error + NEWLINE
        for i, extra in long_rows.items():  # fields beyond the header go after the appended columns
            pieces[i, 2] = pieces[i, 2][:-len(NEWLINE)] + sep + self.render(extra) + NEWLINE
        if nd:
            after = out.derived_after
            position = np.arange(n) + np.searchsorted(after, np.arange(n), side="left")
            order = np.empty(n + nd, dtype=np.int64)
            order[position] = np.arange(n)
            order[after + 1 + np.arange(nd)] = n + np.arange(nd)
            pieces = pieces[order]
        return "".join(pieces.ravel().tolist())

    def _tail(self, key: int, out: ChunkOutput) -> str:
        if self._generation != self.interpreter.generation:  # keys are only valid within one generation
            self._tails.clear()
            self._generation = self.interpreter.generation
        tail = self._tails.get(key)
        if tail is None:
            fields = [*out.fields[key][:BEFORE_ERROR], "", *out.fields[key][BEFORE_ERROR:]]  # error: empty
            tail = self._tails[key] = "".join(self.sep + self.quote(f) for f in fields) + NEWLINE
        return tail

    def _derived_heads(self, cols: dict[str, list[str]], out: ChunkOutput) -> npt.NDArray[Any]:
        """The input columns of derived rows: specimen_id and patient columns copied from their panel,
        analyte corrected_calcium, its value and unit; other columns empty."""
        after = out.derived_after.tolist()
        given = {"analyte": ["corrected_calcium"] * len(after), "value": out.derived_value,
                 "unit": [out.derived_unit] * len(after)}
        for name in ("specimen_id", "age_years", "age_days", "sex"):
            if name in cols:
                given[name] = list(map(cols[name].__getitem__, after))
        by_position = {self.index[name]: values for name, values in given.items()}
        head: npt.NDArray[Any] | str = ""
        for position in range(self.width):
            values = by_position.get(position)
            part: npt.NDArray[Any] | str = ""
            if values is not None:
                joined = "\x00".join(values)
                if self.sep in joined or '"' in joined or "\n" in joined or "\r" in joined:
                    values = [self.quote(v) for v in values]
                part = np.array(values, dtype=object)
            head = part if position == 0 else head + self.sep + part
        if isinstance(head, str):  # pragma: no cover - the header always names the analyte column
            return np.full(len(after), head, dtype=object)
        return head

    def _count(self, out: ChunkOutput, rows: int) -> None:
        s = self.summary
        s.rows += rows
        s.derived += len(out.derived_after)
        s.abnormal += out.abnormal
        s.critical += out.critical
        s.errors += len(out.errors)
