"""Verify a CSV file of results, streamed: shared by POST /v1/verify/csv and `labinterp verify`.

Adjacent rows with the same specimen_id form a specimen (a panel), as for interpretation. Earlier
rows of the same patient_id are that patient's previous results: the file need not be sorted by
patient, but each patient's rows are read in the order given; with collected_at, a result is
compared only with an earlier-collected one (a row collected before the patient's latest kept
result of that analyte has nothing to be compared with). Only released results become previous
results (a held result may be wrong: it is what the rules question). Memory holds one block of
specimens and each patient's latest released result per analyte: bounded by patients, not rows.
Each row comes out with its input fields and disposition, verification_actions,
verification_reasons, flag and error.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice, repeat
from operator import itemgetter
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from labinterp.core.columnar import ChunkOutput, Coded, ColumnarInterpreter, Numbers, RowChunk
from labinterp.core.engine import Engine, Staged
from labinterp.core.errors import InvalidInput
from labinterp.core.model import COMPARATORS, HEMOLYSIS, Panel, Patient, ResultInput
from labinterp.core.outcomes import REASONS, Verdict
from labinterp.core.patients import patient_of_columns
from labinterp.core.verification import (
    COMPARATOR_CODES,
    LOW_CODES,
    RELEASED,
    UNTIMED,
    Measured,
    MeasuredResult,
    PreviousColumns,
    Reason,
    ResultColumns,
    SpecimenFindings,
    Verification,
    VerificationRules,
    VerifySummary,
    decided,
    micros,
    result_reasons,
    utc,
)
from labinterp.files.csvfile import _collector_paused
from labinterp.render.verify import csv_cells

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("patient_id", "collected_at", "hemolysis_index", "hemolysis", "comparator", "age_years", "age_days",
            "sex", "specimen")
ADDED = ("disposition", "verification_actions", "verification_reasons", "flag", "error")
BLOCK_ROWS = 5000  # rows (whole specimens) interpreted together: one pass of the file path per block
MAX_KNOWN = 200_000  # results the engine read (rows the file path refuses) remembered before starting again
MAX_RESULTS = 10_000  # distinct results of the file path, with their verification, kept before starting again
MAX_READINGS = 10_000  # each column's distinct readings (values, times, ...) kept before starting again
MAX_FIELD = 1 << 16
_CMP_OF = tuple(sorted(COMPARATOR_CODES, key=COMPARATOR_CODES.__getitem__))  # a comparator by its code
_OTHER_LINE_ENDS = ("\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")  # splitlines() ends lines there


class CsvHeaderError(ValueError):
    """The header lacks a required column (or the file is not CSV)."""


class _Decision:
    """A result's verification with its CSV cells and its counts' reasons, worked out once."""

    __slots__ = ("verification", "released", "cells", "codes", "texts")

    def __init__(self, rules: VerificationRules, v: Verification):
        self.verification = v
        self.released = v.disposition == "release"
        self.cells = csv_cells(rules, v)
        self.codes = tuple((r.code, r.action, r.holds) for r in v.reasons)
        self.texts: dict[str | None, str] = {}  # the appended cells as CSV text, per flag

    def text(self, flag: str | None) -> str:
        found = self.texts.get(flag)
        if found is None:
            found = self.texts[flag] = _csv_text([*self.cells, flag or "", ""])
        return found


_Decided = tuple[tuple[Reason, ...], _Decision]  # a result's own reasons, and its decision if no other rule adds
_Entry = tuple[Measured, _Decided]  # a distinct result of a block: its facts, own reasons and decision
_Patient = tuple[Patient, tuple[str, str, str]]
# a distinct result's analyte code, value, comparator code, low flag code (ResultColumns.low) and whether the rules
# that read it alone release it
_Columns = tuple[int, float, int, int, bool]
_COLUMNS = 5  # the items of _Columns  # a patient, and age_years, age_days, sex as the file path reads them


@dataclass
class _Read:
    """A block's rows, read: per specimen (first row, row after its last, patient_id) and its patient (or the
    error of its patient columns); per row its error, value, comparator code (-1: not one), time, haemolysis
    index and grade, and its analyte, unit and specimen columns as written."""

    specimens: list[tuple[int, int, str | None]]
    spec_of_row: npt.NDArray[np.int64]
    patients: list[_Patient | str]
    errors: list[str | None]
    values: list[float | str]
    comparators: list[int]
    times: list[datetime | None]  # read only where the row has no error
    micros: npt.NDArray[np.int64]  # the times in microseconds (UNTIMED: none)
    indices: list[float | None]
    hemolysis: list[str | None]
    analytes: list[str]
    units: list[str]
    specimens_given: list[str] | None
    regular: bool  # every row has as many fields as the header


class _Memo(dict):  # type: ignore[type-arg]
    """A dict that computes a missing entry once, so a column is read through map() at C speed."""

    def __init__(self, compute: Callable[[str], object]):
        super().__init__()
        self.compute = compute
        self.texts = 0  # entries whose value is a str (for a reading: its error): none, and no reading failed

    def __missing__(self, key: str) -> object:
        value = self[key] = self.compute(key)
        if value.__class__ is str:
            self.texts += 1
        return value

    def clear(self) -> None:
        super().clear()
        self.texts = 0


def _checked(text: str, name: str) -> float | str:
    """A number column's value, or its error."""
    try:
        return _number(text.strip(), name)
    except ValueError as exc:
        return str(exc)


def _time(text: str) -> datetime | str | None:
    stamp = text.strip()
    if not stamp:
        return None
    try:
        return utc(datetime.fromisoformat(stamp))
    except ValueError:
        return "collected_at: not an ISO 8601 date-time"


def _micros(text: str) -> int:
    """A time's microseconds (see micros), or UNTIMED without one (or with a time in error)."""
    moment = _time(text)
    return micros(moment) if isinstance(moment, datetime) else UNTIMED


def _comparator(text: str) -> int:
    comparator = text.strip() or None
    return COMPARATOR_CODES.get(comparator, -1)


class VerifyJob:
    """Iterate to get the output CSV in blocks of bytes; `summary` is complete once iterated.

    A block's results are interpreted by the file path (ColumnarInterpreter: the interpretation rules
    once per distinct key); the rules that read one result alone are applied once per distinct result
    (result_reasons), the specimen and history rules to the whole block at once (SpecimenFindings, the
    arrays /v1/verify's one panel also goes through); rows the file path refuses are interpreted by the
    engine, whose refusal is the row's error."""

    def __init__(self, engine: Engine, rules: dict[str | None, VerificationRules], lab: str | None,
                 source: IO[bytes], progress: Callable[[VerifySummary], None] | None = None):
        self.engine, self.lab, self.progress = engine, lab, progress
        self.knowledge = engine.profile(lab)  # raises InvalidInput for an unknown laboratory
        self.rules = rules[lab]
        self.interpreter = ColumnarInterpreter(engine, lab)
        self.text = io.TextIOWrapper(source, encoding="utf-8-sig", newline="", errors="replace")
        csv.field_size_limit(MAX_FIELD)
        first = self.text.readline()
        # ',' or ';' as the interpret path accepts: the header says which.
        delimiter = ";" if first.count(";") > first.count(",") else ","
        try:
            self.header = next(csv.reader([first], delimiter=delimiter))
        except (StopIteration, csv.Error) as exc:
            raise CsvHeaderError("the file is empty or not CSV: a header row is required") from exc
        self.delimiter = delimiter
        self.header = [h.strip() for h in self.header]
        missing = [c for c in REQUIRED if c not in {h.lower() for h in self.header}]
        if missing:
            raise CsvHeaderError(f"the header lacks the required columns {missing} (has {self.header})")
        self.column = {name.lower(): i for i, name in enumerate(self.header)}
        self.history = History()
        self.summary = VerifySummary()
        # The engine's outcome (or refusal) per distinct (result, patient), for the rows the file path refuses.
        self.known: dict[tuple[ResultInput, Patient], Measured | str] = {}
        # Per distinct result of the file path: its facts and the reasons of the rules that read it alone.
        self._results: dict[tuple[Hashable, ...], tuple[MeasuredResult, _Decided, _Columns]] = {}
        self._generation = self.interpreter.generation
        self._released = _Decision(self.rules, RELEASED)
        self._decisions: dict[tuple[Reason, ...], _Decision] = {}  # by reasons, for the rows held by history rules
        self._patients = _Memo(self._patient)  # type: ignore[arg-type]
        # each column's reading per distinct text (files repeat values, times and spellings)
        self._values = _Memo(lambda text: _checked(text, "value"))
        self._indices = _Memo(lambda text: _checked(text, "hemolysis_index") if text.strip() else None)
        self._times = _Memo(_time)
        self._micros = _Memo(_micros)
        self._comparators = _Memo(_comparator)
        self._hemolysis = _Memo(lambda text: text.strip() or None)
        self._memos = (self._values, self._indices, self._times, self._micros, self._comparators, self._hemolysis)

    # ------------------------------------------------------------------ output
    def __iter__(self) -> Iterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([*self.header, *ADDED])
        yield out.getvalue().encode()
        sid_column = self.column["specimen_id"]

        def sid(fields: list[str]) -> str:
            return fields[sid_column].strip() if sid_column < len(fields) else ""

        rows: list[list[str]] = []  # read, not yet verified: the block ends before its last specimen
        sids: list[str] = []
        written: list[str | None] = []  # each row's input fields as output text (None: the csv module writes it)
        while True:
            # the cyclic collector paused while a block is read and verified, as for the interpret path: a block
            # allocates many short-lived objects (no cycles), and collecting them cost a sixth of the time
            with _collector_paused():
                more, texts, final = self._lines()
                rows += more
                if more and min(map(len, more)) > sid_column:
                    sids += map(str.strip, map(itemgetter(sid_column), more))
                else:
                    sids += [sid(fields) for fields in more]
                written += texts
                end = len(rows)
                if not final:  # blocks end between specimens: the last one may go on in the next lines
                    last = sids[-1] if sids else None
                    while end and sids[end - 1] == last:
                        end -= 1
                    if not end:
                        continue
                elif not rows:
                    return
                block = self._block(rows[:end], sids[:end], written[:end])
                rows, sids, written = rows[end:], sids[end:], written[end:]
            yield block

    def _lines(self) -> tuple[list[list[str]], list[str | None], bool]:
        """The next rows (empty lines skipped), and each row's input fields as the csv module writes them.

        Lines without a quote are split at the delimiter and written back as read (with ',' for ';' when no
        field holds a ','): the csv module reads and writes such a line the same way. Lines with a quote go
        through the csv module, whose quoted fields may run over several lines; a line it cannot read is a
        row of its own, with why."""
        lines = list(islice(self.text, BLOCK_ROWS))
        if not lines:
            return [], [], True
        text = "".join(lines)
        if '"' not in text and "\0" not in text and max(map(len, lines)) < MAX_FIELD:
            if any(end in text for end in _OTHER_LINE_ENDS):
                kept = [line for line in (line.rstrip("\r\n") for line in lines) if line]
            else:  # the line ends are those the file was split at: CRLF, LF, CR
                kept = list(filter(None, text.splitlines()))
            rows = list(map(str.split, kept, repeat(self.delimiter)))
            if self.delimiter == ",":
                return rows, list(kept), False
            if "," not in text:
                return rows, [line.replace(self.delimiter, ",") for line in kept], False
            return rows, [None] * len(rows), False
        pulled = 0

        def source() -> Iterator[str]:
            nonlocal pulled
            for line in chain(lines, self.text):  # past this block's lines only to end a quoted field
                pulled += 1
                yield line

        reader = csv.reader(source(), delimiter=self.delimiter)
        rows = []
        while pulled < len(lines):
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                fields = [f"<unreadable line: {exc}>"]
            if fields:
                rows.append(fields)
        return rows, [None] * len(rows), False

    def _block(self, rows: list[list[str]], sids: list[str], written: list[str | None]) -> bytes:
        if len(self.known) > MAX_KNOWN:
            self.known.clear()  # memory stays bounded whatever the file
        for cache in (self._patients, *self._memos):
            if len(cache) > MAX_READINGS:
                cache.clear()
        read = self._read(rows, sids)
        table, codes, columns = self._interpret(read)
        self._verify(read, table, codes, columns)
        # rows alike (the same result, the same decision) share their cells and are counted together
        distinct, first, alike = np.unique(codes, return_index=True, return_inverse=True)
        texts: list[str | None] = [None] * len(distinct)
        seen = np.bincount(alike.reshape(-1), minlength=len(distinct)).tolist()
        counts: dict[tuple[str, int], list[Any]] = {}  # (analyte, decision): [decision, rows], in file order
        distinct_codes = distinct.tolist()
        for j in np.argsort(first).tolist():
            code = distinct_codes[j]
            if code < 0:
                continue  # rows in error: each its own cells
            fact, (_, d) = table[code]
            key = (fact.analyte, id(d))
            found = counts.get(key)
            if found is None:
                counts[key] = [d, seen[j]]
            else:
                found[1] += seen[j]
            texts[j] = d.text(fact.verdict.flag)
        for (analyte, _), (d, times_seen) in counts.items():
            self.summary.count(analyte, d.verification.disposition, d.codes, times_seen)
        added = cast(list[str], list(map(texts.__getitem__, alike.reshape(-1).tolist())))  # None: filled below
        if distinct[0] < 0:
            for i in np.flatnonzero(codes < 0).tolist():
                self.summary.errors += 1
                added[i] = _csv_text(["", "", "", "", read.errors[i] or "not interpreted"])
        width = len(self.header)
        if not read.regular:
            # as the interpret path writes them: the appended columns under their header, a short row's missing
            # fields empty, a long row's extra fields after the appended columns
            for i, fields in enumerate(rows):
                if len(fields) != width:
                    written[i] = _csv_text((fields + [""] * width)[:width])
                    if len(fields) > width:
                        added[i] += "," + _csv_text(fields[width:])
        if self.progress is not None:
            self.progress(self.summary)
        return _joined(rows, written, added).encode()

    # ------------------------------------------------------------------ input
    def _read(self, rows: list[list[str]], sids: list[str]) -> _Read:
        """The block's rows read column by column: specimens and their patients, each row's error (in the
        order the checks apply), time and haemolysis index, and the results to interpret."""
        n, width, c = len(rows), len(self.header), self.column
        given = np.array(sids, dtype=object)
        starts = [0, *(np.flatnonzero(given[1:] != given[:-1]) + 1).tolist()]
        lengths = np.diff(np.append(starts, n))
        spec_of_row = np.repeat(np.arange(len(starts)), lengths)
        firsts = [rows[i] for i in starts]

        def first(name: str) -> list[str]:  # each specimen's first row's field, stripped ("" if missing)
            i = c.get(name)
            if i is None:
                return [""] * len(firsts)
            return [f[i].strip() if i < len(f) else "" for f in firsts]

        patient_ids = [p or None for p in first("patient_id")]
        patients = list(map(self._patients.__getitem__, zip(first("age_years"), first("age_days"), first("sex"),
                                                             strict=True)))
        ends = [*starts[1:], n]
        specimens = list(zip(starts, ends, patient_ids, strict=True))
        regular = set(map(len, rows)) == {width}

        by_column = list(zip(*rows, strict=True)) if regular else []  # the fields column by column, at once

        def column(name: str) -> list[str] | None:
            i = c.get(name)
            if i is None:
                return None
            if regular:
                return list(by_column[i])
            return [f[i] if len(f) == width else "" for f in rows]

        values = list(map(self._values.__getitem__, column("value") or []))
        cmp_col, time_col, index_col = column("comparator"), column("collected_at"), column("hemolysis_index")
        comparators = [0] * n if cmp_col is None else list(map(self._comparators.__getitem__, cmp_col))
        times: list[datetime | str | None] = [None] * n if time_col is None else list(
            map(self._times.__getitem__, time_col))
        indices: list[float | str | None] = [None] * n if index_col is None else list(
            map(self._indices.__getitem__, index_col))
        # the rows that may have an error: their checks then run in order, row by row
        suspect = {i for i, f in enumerate(rows) if len(f) != width} if not regular else set()
        pid_col = column("patient_id")
        if pid_col is not None:
            expected = np.array([p or "" for p in patient_ids], dtype=object)[spec_of_row]
            suspect.update(np.flatnonzero(np.array(list(map(str.strip, pid_col)), dtype=object) != expected).tolist())
        for s, who in enumerate(patients):
            if isinstance(who, str):
                suspect.update(range(starts[s], ends[s]))
        # a reading that failed is its error's text: the columns of types other than str need no scan
        failed = []  # the columns with a reading that failed
        for readings, memo in ((values, self._values), (times, self._times), (indices, self._indices)):
            if memo.texts and str in set(map(type, readings)):
                failed.append(readings)
                suspect.update(i for i, v in enumerate(readings) if v.__class__ is str)
        if comparators and min(comparators) < 0:
            suspect.update(i for i, v in enumerate(comparators) if v < 0)
        errors: list[str | None] = [None] * n
        for i in sorted(suspect):
            errors[i] = self._error(rows[i], width, patients[spec_of_row[i]], patient_ids[spec_of_row[i]],
                                    values[i], comparators[i], times[i], indices[i])
        hem_col, spec_col = column("hemolysis"), column("specimen")
        hemolysis = [None] * n if hem_col is None else list(map(self._hemolysis.__getitem__, hem_col))
        # what is left of an errored row's readings is not used
        if any(readings is times for readings in failed):
            times = [None if isinstance(t, str) else t for t in times]
        if any(readings is indices for readings in failed):
            indices = [None if isinstance(x, str) else x for x in indices]
        micros_ = np.full(n, UNTIMED, dtype=np.int64) if time_col is None else np.fromiter(
            map(self._micros.__getitem__, time_col), np.int64, n)
        return _Read(specimens, spec_of_row, patients, errors, values, comparators, times,  # type: ignore[arg-type]
                     micros_,
                     indices,  # type: ignore[arg-type]
                     hemolysis, column("analyte") or [], column("unit") or [], spec_col, regular)

    def _error(self, fields: list[str], width: int, who: _Patient | str, patient_id: str | None, value: float | str,
               comparator: int, moment: datetime | str | None, index: float | str | None) -> str | None:
        """A row's first error, as the checks apply in order (None: none)."""
        if isinstance(who, str):
            return who
        if len(fields) != width:
            return f"row has {len(fields)} fields, the header {width}"
        if self._get(fields, "patient_id") != (patient_id or ""):
            return "patient_id differs from an earlier row with this specimen_id"
        if isinstance(value, str):
            return value
        if comparator < 0:
            return f"comparator: must be one of {list(COMPARATORS)}"
        if isinstance(moment, str):
            return moment
        if isinstance(index, str):
            return index
        return None

    def _get(self, fields: list[str], name: str) -> str:
        i = self.column.get(name)
        return fields[i].strip() if i is not None and i < len(fields) else ""

    def _patient(self, key: tuple[str, str, str]) -> _Patient | str:
        """The patient of age_years, age_days and sex (stripped), read as the file path reads them (the same
        function), and these columns as given to the file path; or the problems, in the data's words."""
        who, problems = patient_of_columns(self.knowledge.words, *key)
        return "; ".join(problems) if problems else (who, key)

    # ------------------------------------------------------------------ interpretation
    def _interpret(self, read: _Read) -> tuple[list[_Entry], npt.NDArray[np.int64], list[_Columns]]:
        """Each result interpreted alone, as its own panel: by the file path, and the rows it refuses (or
        whose haemolysis grade it does not read) by the engine; then the rules that read one result alone.
        Returns the distinct results (facts and own reasons), each row's (-1: the row is in error), and each
        distinct result's columns as the specimen and history rules read them."""
        errors, hemolysis, indices = read.errors, read.hemolysis, read.indices
        n = len(errors)
        table: list[_Entry] = []
        columns_of: list[_Columns] = []
        codes = np.full(n, -1, dtype=np.int64)
        good = list(range(n)) if errors.count(None) == n else [i for i, e in enumerate(errors) if e is None]
        by_engine = [] if hemolysis.count(None) == n else [
            i for i in good if hemolysis[i] is not None and hemolysis[i] not in HEMOLYSIS]
        if by_engine:
            refused = set(by_engine)
            good = [i for i in good if i not in refused]
        if good:
            out = self._columnar(read, good)
            assert out.reasons is not None and out.selections is not None and out.analytes is not None
            if self._generation != self.interpreter.generation or len(self._results) > MAX_RESULTS:
                self._results.clear()  # its keys are only valid within one generation of the file path's caches
                self._generation = self.interpreter.generation
            m = len(good)  # the rows derived after them (corrected calcium) are not verified
            if out.errors:  # refused rows (the engine says why) are not results of the file path
                refused_rows = set(out.errors)
                by_engine += [i for r, i in enumerate(good) if r in refused_rows]
                kept_rows = [r for r in range(m) if r not in refused_rows]
                good = [good[r] for r in kept_rows]
                chosen = np.array(kept_rows, dtype=np.int64)
            else:
                chosen = np.arange(m)
            if good:
                # a result of the file path is known by its codes, comparator, haemolysis grade and index:
                # its facts and own reasons are worked out once per distinct key
                rest_texts: list[tuple[str | None, float | None]]
                if hemolysis.count(None) == n and indices.count(None) == n:  # neither column given
                    rest_texts, rest_codes = [(None, None)], np.zeros(len(good), dtype=np.int64)
                else:
                    rest = list(zip(map(hemolysis.__getitem__, good), map(indices.__getitem__, good), strict=True))
                    rest_texts = list(dict.fromkeys(rest))
                    rest_code = {key: c for c, key in enumerate(rest_texts)}
                    rest_codes = np.fromiter(map(rest_code.__getitem__, rest), np.int64, len(rest))
                columns = [out.codes[chosen], out.value_codes[chosen], out.reasons[chosen], out.selections[chosen],
                           out.analytes[chosen], np.array(read.comparators, dtype=np.int64)[good], rest_codes]
                first, inverse = _distinct_rows(columns)
                keys, values = out.keys, out.values
                distinct_keys = [(keys[c], values[v], reason, sel, analyte, cmp, rest_texts[r])
                                 for c, v, reason, sel, analyte, cmp, r in np.stack(columns, axis=1)[first].tolist()]
                seen = list(map(self._results.get, distinct_keys))  # None: not seen yet
                entries = [found if found is not None else self._result(out, key)
                           for found, key in zip(seen, distinct_keys, strict=True)]
                table = [(fact, own) for fact, own, _ in entries]
                columns_of = [mine for _, _, mine in entries]
                codes[np.array(good, dtype=np.int64)] = inverse.reshape(-1)
        if by_engine:
            results: list[tuple[ResultInput, _Patient]] = []
            for i in by_engine:
                who = read.patients[read.spec_of_row[i]]
                assert not isinstance(who, str)  # a row of a patient in error has that error
                results.append((self._result_input(read, i), who))
            self._interpret_new([(r, who[0]) for r, who in results])
            for i, (result, who) in zip(by_engine, results, strict=True):
                known = self.known[(result, who[0])]
                if isinstance(known, str):
                    errors[i] = known
                else:
                    index = indices[i]
                    codes[i] = len(table)
                    own = self._decided(known, index if isinstance(index, float) else None)
                    table.append((known, own))
                    columns_of.append(self._columns(known, own))
        return table, codes, columns_of

    def _result(self, out: ChunkOutput, key: tuple[Any, ...]) -> tuple[MeasuredResult, _Decided, _Columns]:
        """A distinct result of the file path not seen before, known by its key (verdict key, value, reason,
        selection, analyte, comparator code, haemolysis grade and index): its facts and the reasons of the rules
        that read it alone, remembered."""
        verdict_key, value, reason, sel, analyte, comparator, rest = key
        verdict = out.verdicts[verdict_key]
        assert verdict is not None
        critical, interval_reason = self.interpreter.selected(sel)
        hemolysis, index = rest
        fact = MeasuredResult(self.interpreter.analytes[analyte], value, _CMP_OF[comparator], hemolysis,
                              Verdict(verdict.classification, verdict.flag, verdict.critical, REASONS[reason],
                                      verdict.grade),
                              critical, self.interpreter.implausible[analyte], interval_reason)
        own = self._decided(fact, index)
        found = self._results[key] = (fact, own, self._columns(fact, own))
        return found

    def _columns(self, fact: Measured, own: _Decided) -> _Columns:
        """A distinct result's columns as the specimen and history rules read them (worked out once)."""
        return (self.history.analyte_code(fact.analyte), fact.value, COMPARATOR_CODES[fact.comparator],
                LOW_CODES.get(fact.verdict.flag, 0), own[1].released)

    def _decided(self, fact: Measured, index: float | None) -> _Decided:
        reasons = result_reasons(self.rules, fact, index)
        return reasons, (self._released if not reasons else _Decision(self.rules, decided(reasons)))

    def _columnar(self, read: _Read, good: list[int]) -> ChunkOutput:
        """The file path over the results of rows `good`, each its own panel (a result's verdict is its own),
        with its specimen's patient."""
        n = len(good)
        rows = np.array(good, dtype=np.int64)
        value = np.fromiter(map(read.values.__getitem__, good), np.float64, n)
        comparator = np.array(read.comparators, dtype=np.int8)[rows]
        shown = [("", "", "") if isinstance(who, str) else who[1] for who in read.patients]
        panel_patient = read.spec_of_row[rows]

        def coded(texts: list[str], strip: bool = True) -> Coded:
            whole = Coded.of(texts)
            return Coded(whole.codes[rows], [t.strip() for t in whole.texts] if strip else whole.texts)

        def per_patient(column: int) -> Coded:
            whole = Coded.of([s[column] for s in shown])
            return Coded(whole.codes[panel_patient], whole.texts)

        def texts(column: str, chosen: list[int]) -> list[str]:  # for the file path's own error messages
            return [repr(float(value[r])) if column == "value" else "" for r in chosen]

        new_panel = np.ones(n, dtype=bool)  # a specimen's rows are a panel (a result's verdict is its own)
        new_panel[1:] = panel_patient[1:] != panel_patient[:-1]
        chunk = RowChunk(new_panel, np.zeros(n, dtype=bool), coded(read.analytes),
                         Numbers(value, comparator, np.zeros(n, dtype=bool)), coded(read.units),
                         np.arange(1, n + 1, dtype=np.int64), texts, per_patient(0), per_patient(1), per_patient(2),
                         None if read.specimens_given is None else coded(read.specimens_given))
        return self.interpreter.interpret(chunk)

    def _result_input(self, read: _Read, i: int) -> ResultInput:
        """Row i as the engine reads a result."""
        value = read.values[i]
        assert isinstance(value, float)
        given = read.specimens_given
        return ResultInput(read.analytes[i].strip(), value, read.units[i].strip(),
                           comparator=_CMP_OF[read.comparators[i]],
                           specimen=(given[i].strip() or None) if given is not None else None,
                           hemolysis=read.hemolysis[i])

    def _interpret_new(self, keys: list[tuple[ResultInput, Patient]]) -> None:
        """Interpret the results not seen before by the engine, all in one classification; remember outcomes
        and refusals."""
        staged: list[tuple[tuple[ResultInput, Patient], Staged]] = []
        seen: set[tuple[ResultInput, Patient]] = set()
        for key in keys:
            if key in self.known or key in seen:
                continue
            seen.add(key)
            try:
                staged.append((key, self.engine.stage(Panel((key[0],), key[1], None, self.lab))))
            except InvalidInput as exc:
                self.known[key] = "; ".join(f"{e.path[-1] if e.path else 'row'}: {e.reason}" for e in exc.errors)
        if staged:
            for (key, _), outcome in zip(staged, self.engine.interpret_many([s for _, s in staged]), strict=True):
                self.known[key] = outcome.results[0]

    # ------------------------------------------------------------------ verification
    def _verify(self, read: _Read, table: list[_Entry], codes: npt.NDArray[np.int64],
                columns: list[_Columns]) -> None:
        """The specimen and history rules over the whole block at once (SpecimenFindings), each result compared
        with its patient's latest kept released result of its analyte before its specimen; since whether a
        result is released can depend on its own previous result, the rules are applied again while a row's
        disposition changes (the rows whose earlier results are settled are settled: usually two rounds).
        Released results become their patient's previous results (kept per patient and analyte). A row given
        reasons by these rules gets an entry of its own in `table` (`codes` says which)."""
        live = np.flatnonzero(codes >= 0)
        n = len(live)
        if not n:
            return
        rules, history = self.rules, self.history
        entry = codes[live]
        spec = read.spec_of_row[live]
        starts = np.flatnonzero(np.append(True, spec[1:] != spec[:-1]))
        # the columns, read once per distinct result (small codes and the values: exact as float64)
        per_result = np.fromiter(chain.from_iterable(columns), np.float64, _COLUMNS * len(columns))
        per_result = per_result.reshape(-1, _COLUMNS).T
        analyte = per_result[0].astype(np.int64)[entry]
        value = per_result[1][entry]
        comparator = per_result[2].astype(np.int64)[entry]
        low = per_result[3].astype(np.int64)[entry]
        alone_released = per_result[4].astype(bool)[entry]
        time = read.micros[live]
        timed = time != UNTIMED
        rows = ResultColumns(starts, history.names, analyte, value, comparator, low, time, timed)
        # each row's patient (-1: none), and its history key: patient and analyte
        patient = history.patient_codes(list(map(_PATIENT_ID, read.specimens)))[spec]
        key = np.where(patient >= 0, (patient << _ANALYTE_BITS) | analyte, -1)
        kept = history.kept(_distinct(key[key >= 0]))  # the latest kept result of each (patient, analyte) here
        k = len(kept.key)
        given = np.empty(len(codes), dtype=object)
        given[:] = read.times
        previous = PreviousColumns(np.append(kept.key & _ANALYTE_MASK, analyte), np.append(kept.value, value),
                                   np.append(kept.off_scale, comparator != 0), np.append(kept.time, time),
                                   np.append(kept.timed, timed), np.append(kept.moments, given[live]))
        scan = _KeptScan(kept.key, key, spec, previous.time, previous.timed)
        released = alone_released
        while True:
            candidate, after = scan.run(released)  # per row: the kept result before its specimen (-1: none)
            query = np.flatnonzero(candidate >= 0)
            findings = SpecimenFindings(rules, rows, previous, query, candidate[query])
            now = alone_released & ~findings.held
            changed = now != released
            if not changed.any():
                break
            released = now
            compared = candidate[query] - k  # the rows compared with (< 0: a kept result)
            if not ((changed & (now | ~timed)).any() or changed[compared[compared >= 0]].any()):
                # only rows nobody was compared with are now held, none of them untimed (which would end what
                # came before it): every row is compared with the same result, so the rules answer the same
                _, after = scan.run(released)
                break
        added: dict[int, list[Reason]] = {}
        for i, reason in findings.reasons():
            found = added.get(i)
            if found is None:
                added[i] = found = list(table[int(entry[i])][1][0])
            found.append(reason)
        if len(self._decisions) > MAX_RESULTS:
            self._decisions.clear()
        made: dict[tuple[int, tuple[Reason, ...]], int] = {}  # rows alike (result, reasons) share an entry
        for i, reasons in added.items():
            mine, at = tuple(reasons), int(entry[i])
            code = made.get((at, mine))
            if code is None:
                d = self._decisions.get(mine)  # the same reasons, the same decision (its cells made once)
                if d is None:
                    d = self._decisions[mine] = _Decision(rules, decided(reasons))
                code = made[(at, mine)] = len(table)
                table.append((table[at][0], (mine, d)))
            codes[live[i]] = code
        history.keep(scan.groups, after, previous, k)


_PATIENT_ID = itemgetter(2)


_ANALYTE_BITS = 20  # a history key: patient code << 20 | analyte code
_ANALYTE_MASK = (1 << _ANALYTE_BITS) - 1


@dataclass
class _Kept:
    """Kept results as columns, by history key (ascending)."""

    key: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    off_scale: npt.NDArray[np.bool_]
    time: npt.NDArray[np.int64]
    timed: npt.NDArray[np.bool_]
    moments: npt.NDArray[np.object_]


class History:
    """Each patient's latest released result per analyte, as columns (one slot per patient and analyte, found
    through the sorted keys): bounded by patients, not rows."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}  # patient_id -> code
        self.names: list[str] = []  # analyte codes
        self._analytes: dict[str, int] = {}
        self.keys = np.zeros(0, dtype=np.int64)  # ascending
        self.slots = np.zeros(0, dtype=np.int64)  # aligned with keys
        self.columns = _Kept(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool),
                             np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros(0, dtype=object))

    def __len__(self) -> int:
        """Patients with a kept result."""
        return len(np.unique(self.keys >> _ANALYTE_BITS))

    def results(self) -> int:
        return len(self.keys)

    def patient_codes(self, patient_ids: list[str | None]) -> npt.NDArray[np.int64]:
        """Each patient's code (-1: none given); a patient not seen before is given the next."""
        codes = self.codes
        found = list(map(codes.get, patient_ids))  # type: ignore[arg-type]
        if None in found:
            for i in [i for i, code in enumerate(found) if code is None]:  # new patients, and none given
                pid = patient_ids[i]
                if pid:
                    code = codes.get(pid)
                    if code is None:
                        code = codes[pid] = len(codes)
                    found[i] = code
                else:
                    found[i] = -1
        return np.array(found, dtype=np.int64)

    def analyte_code(self, name: str) -> int:
        code = self._analytes.get(name)
        if code is None:
            code = self._analytes[name] = len(self.names)
            self.names.append(name)
        return code

    def _slots(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Each key's slot (-1: not kept)."""
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.slots[at], -1)

    def kept(self, keys: npt.NDArray[np.int64]) -> _Kept:
        """The kept results of these keys (ascending), those there are."""
        slots = self._slots(keys)
        there = slots >= 0
        slots, c = slots[there], self.columns
        return _Kept(keys[there], c.value[slots], c.off_scale[slots], c.time[slots], c.timed[slots],
                     c.moments[slots])

    def keep(self, keys: npt.NDArray[np.int64], chosen: npt.NDArray[np.int64], previous: PreviousColumns,
             k: int) -> None:
        """After a block: each key's latest kept result is candidate `chosen` of `previous` (the first k are the
        kept results the block began with, which are there already)."""
        new = chosen >= k
        keys, chosen = keys[new], chosen[new]
        if not len(keys):
            return
        slots = self._slots(keys)
        fresh = slots < 0
        if fresh.any():
            used = len(self.keys)
            slots[fresh] = np.arange(used, used + int(fresh.sum()))
            if slots.max() >= len(self.columns.value):  # room for twice as many
                c, size = self.columns, 2 * int(slots.max()) + 64
                self.columns = _Kept(np.resize(c.key, size), np.resize(c.value, size), np.resize(c.off_scale, size),
                                     np.resize(c.time, size), np.resize(c.timed, size), np.resize(c.moments, size))
            where = np.searchsorted(self.keys, keys[fresh])
            self.keys = np.insert(self.keys, where, keys[fresh])
            self.slots = np.insert(self.slots, where, slots[fresh])
        c = self.columns
        c.value[slots], c.off_scale[slots] = previous.value[chosen], previous.off_scale[chosen]
        c.time[slots], c.timed[slots] = previous.time[chosen], previous.timed[chosen]
        c.moments[slots] = np.asarray(previous.moments, dtype=object)[chosen]


class _KeptScan:
    """Which kept result each row is compared with: the patient's latest released result of its analyte before
    its specimen, as the file is read. A released result replaces the kept one unless both have times and it
    was collected before it (an older result arriving late does not replace a newer one); so the kept result
    is the last one without a time, or, after it, the latest collected (of equal times, the last).

    The kept results the block begins with and the block's rows (candidates 0..k-1 and k..) are sorted once by
    key (patient and analyte), each key's kept result first and its rows in file order; each round only says
    which rows are released, and one running maximum answers every row (from the candidates before its
    specimen's first row of the key) and every key (from all of them)."""

    def __init__(self, kept_key: npt.NDArray[np.int64], key: npt.NDArray[np.int64], spec: npt.NDArray[np.int64],
                 time: npt.NDArray[np.int64], timed: npt.NDArray[np.bool_]):
        k, n = len(kept_key), len(key)
        self.k, self.n = k, n
        asked = np.flatnonzero(key >= 0)  # rows with a patient
        every = np.append(kept_key, key[asked])
        order = np.argsort(every, kind="stable")  # by key; each key's kept result first, then its rows in order
        candidate = np.append(np.arange(k), k + asked)[order]  # the candidate at each place
        sorted_key = every[order]
        sorted_spec = np.append(np.full(k, -1), spec[asked])[order]
        start = np.ones(len(order), dtype=bool)  # a key's first place
        start[1:] = sorted_key[1:] != sorted_key[:-1]
        run = start.copy()  # a place that begins a run of the same key and specimen
        run[1:] |= sorted_spec[1:] != sorted_spec[:-1]
        run_start = np.maximum.accumulate(np.where(run, np.arange(len(order)), 0))
        # a row's question is answered at the place before its run (-1: its key has nothing before)
        self.before = np.where(start[run_start], -1, run_start - 1)
        self.row_of_place = np.where(candidate >= k, candidate - k, -1)
        self.asked_place = np.flatnonzero(self.row_of_place >= 0)
        self.groups = sorted_key[start]
        self.last_place = np.append(np.flatnonzero(start)[1:], len(order))[:len(self.groups)] - 1
        m = k + n + 1
        rank = np.unique(np.where(timed, time, 0), return_inverse=True)[1].reshape(-1)
        # a place's order within its key: untimed ones lowest (they start a segment), then by time, then last
        self.inner = (np.where(timed, (rank + 1) * m, 0) + np.arange(1, m))[candidate]
        self.untimed = ~timed[candidate]
        self.start, self.is_kept, self.candidate = start, candidate < k, candidate
        self.span, self.m = (int(rank.max(initial=0)) + 2) * m, m

    def run(self, released: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per row, the candidate it is compared with (-1: none), given which rows are released; and per key
        (self.groups), its kept candidate after the block."""
        active = self.is_kept | released[np.maximum(self.row_of_place, 0)]
        segment = np.cumsum(self.start | (active & self.untimed))
        base = segment * self.span
        best = np.maximum.accumulate(np.where(active, base + self.inner, -1))
        found = best >= base  # the key's latest kept candidate up to each place (inclusive)
        chosen = np.where(found, (best - base) % self.m - 1, -1)
        out = np.full(self.n, -1, dtype=np.int64)
        places = self.asked_place
        before = self.before[places]
        out[self.row_of_place[places]] = np.where(before >= 0, chosen[np.maximum(before, 0)], -1)
        return out, chosen[self.last_place]


def _distinct(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The distinct keys, ascending: np.unique's answer, by one sort (cheaper here than its hashing)."""
    ordered = np.sort(keys)
    return ordered[np.append(True, ordered[1:] != ordered[:-1])] if len(ordered) else ordered


def _distinct_rows(columns: list[npt.NDArray[np.int64]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows alike in every column: the first row of each distinct combination, and each row's combination.

    The columns are folded into one integer key (renumbered whenever the next column could overflow it)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    span = 1
    for column in columns:
        low = int(column.min())
        size = int(column.max()) - low + 1
        if span * size >= 1 << 62:
            key = np.unique(key, return_inverse=True)[1].reshape(-1)
            span = int(key.max()) + 1
        key = key * size + (column - low)
        span *= size
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _csv_text(fields: list[str]) -> str:
    """Fields as the csv module writes them, without the line end (more than one field: never the lone quoted
    empty field the module writes for a row of one empty field)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields)
    return out.getvalue()[:-2]


def _joined(rows: list[list[str]], written: list[str | None], added: list[str]) -> str:
    """Each row as the csv module writes it with its appended cells: the input fields as read where `written`
    has them; else all such rows written at once and split at the line ends, unless a field holds a line end
    or a row is one empty field (which the module writes as a quoted empty field when it is alone)."""
    if None in written:
        missing = [i for i, line in enumerate(written) if line is None]
        for i, line in zip(missing, _written([rows[i] for i in missing]), strict=True):
            written[i] = line
    return "".join([f"{line},{cells}\r\n" for line, cells in zip(written, added, strict=True)])


def _written(rows: list[list[str]]) -> list[str]:
    """Rows as the csv module writes them, without line ends."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    lines = out.getvalue().split("\r\n")
    if len(lines) != len(rows) + 1 or [""] in rows:
        lines = ["" if fields == [""] else _csv_text(fields) for fields in rows] + [""]
    return lines[:-1]


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number, not negative")
    return value
