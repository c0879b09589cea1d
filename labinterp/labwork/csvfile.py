"""CSV in, CSV out, streamed in chunks: shared by POST /v1/interpret/csv and `labinterp interpret`.

Each input row is written back as it came (its raw text, so other columns pass through
untouched), followed by the appended columns; derived rows follow the last row of their panel.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from labinterp.core.columnar import EMPTY_LINE, OUTPUT_COLUMNS, ChunkOutput, ColumnarInterpreter, RowChunk

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("age_years", "age_days", "sex", "specimen")
CHUNK_ROWS = 20_000
MAX_PANEL_ROWS = 10 * CHUNK_ROWS  # a "panel" larger than this is processed in pieces
PREFIX = "labinterp_"
NEWLINE = "\r\n"  # RFC 4180


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
        at_end = False
        while not at_end:
            lines = list(islice(self.text, self.chunk_rows))
            at_end = len(lines) < self.chunk_rows
            first_line = carry_line if carry else self.line + 1
            self.line += len(lines)
            lines = carry + lines
            carry = []
            if not lines:
                break
            rows, raws, starts = self._parse(lines)
            if not at_end:
                # the last row may be cut short inside a quoted field: it goes on with the last panel
                cut = self._last_panel_start(rows[:-1]) if len(rows) > 1 else 0
                if cut == 0 and len(lines) < MAX_PANEL_ROWS:
                    carry, carry_line = lines, first_line  # one panel so far: read on
                    continue
                if cut > 0:
                    carry, carry_line = lines[starts[cut]:], first_line + starts[cut]
                    rows, raws, starts = rows[:cut], raws[:cut], starts[:cut]
            yield self._chunk(rows, raws, [first_line + s for s in starts])
            if self.progress is not None:
                self.progress(self.summary)

    def _parse(self, lines: list[str]) -> tuple[list[list[str]], list[str], list[int]]:
        """Rows, each row's raw text (without its line end) and the index of its first line."""
        rows = list(csv.reader(lines, delimiter=self.sep))
        if len(rows) == len(lines):
            return rows, [line.rstrip("\r\n") for line in lines], list(range(len(lines)))
        # a quoted field spans lines: map rows to their lines one by one
        reader = csv.reader(lines, delimiter=self.sep)
        rows, raws, starts = [], [], []
        previous = 0
        for row in reader:
            rows.append(row)
            starts.append(previous)
            raws.append("".join(lines[previous:reader.line_num]).rstrip("\r\n"))
            previous = reader.line_num
        return rows, raws, starts

    def _last_panel_start(self, rows: list[list[str]]) -> int:
        column = self.index["specimen_id"]

        def sid(row: list[str]) -> str | None:
            return row[column] if len(row) > column else None

        last = sid(rows[-1])
        i = len(rows) - 1
        while i > 0 and sid(rows[i - 1]) == last:
            i -= 1
        return i

    def _chunk(self, rows: list[list[str]], raws: list[str], lines: list[int]) -> str:
        width, sep = self.width, self.sep
        problems: dict[int, str] = {}
        fields = rows
        if set(map(len, rows)) != {width}:
            fields = []
            for i, row in enumerate(rows):
                if len(row) == width:
                    fields.append(row)
                    continue
                if not row or row == [""]:
                    problems[i] = EMPTY_LINE
                    raws[i] = sep * (width - 1)
                else:
                    problems[i] = f"has {len(row)} fields, the header has {width}"
                    raws[i] = (raws[i] + sep * (width - len(row)) if len(row) < width
                               else self.render(row[:width]))
                fields.append((row + [""] * width)[:width])
        cols = {name: list(map(itemgetter(i), fields)) for name, i in self.index.items()}
        chunk = RowChunk(cols["specimen_id"], cols["analyte"], cols["value"], cols["unit"], lines,
                         cols.get("age_years"), cols.get("age_days"), cols.get("sex"), cols.get("specimen"),
                         problems)
        out = self.interpreter.interpret(chunk)
        n = len(rows)
        self._count(out, n)
        # raw row text, then the appended columns (one tail string per distinct verdict)
        nd = len(out.derived_after)
        heads = np.empty(n + nd, dtype=object)
        heads[:n] = raws
        if nd:
            heads[n:] = self._derived_heads(cols, out)
        tails = np.array([self._tail(k, out) for k in out.keys], dtype=object)[out.codes]
        text = heads + (sep + out.values) + tails
        for r, message in out.errors.items():
            text[r] = raws[r] + sep * len(OUTPUT_COLUMNS) + self.quote(message) + NEWLINE
        for i, row in enumerate(rows):
            if len(row) > width:  # extra fields go after the appended columns
                text[i] = text[i][:-len(NEWLINE)] + sep + self.render(row[width:]) + NEWLINE
        if nd:
            after = out.derived_after
            position = np.arange(n) + np.searchsorted(after, np.arange(n), side="left")
            order = np.empty(len(text), dtype=np.int64)
            order[position] = np.arange(n)
            order[after + 1 + np.arange(len(after))] = n + np.arange(len(after))
            text = text[order]
        return "".join(text.tolist())

    def _tail(self, key: int, out: ChunkOutput) -> str:
        tail = self._tails.get(key)
        if tail is None:
            tail = self._tails[key] = "".join(self.sep + self.quote(f) for f in out.fields[key]) + self.sep + NEWLINE
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
