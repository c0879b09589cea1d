"""Verify a CSV file of results, streamed: shared by POST /v1/verify/csv and `labinterp verify`.

The file is read by the interpret path's reader (files/csvfile.CsvReader: the same delimiters, quoting, limits,
line numbers and row errors) and interpreted by its interpreter: adjacent rows with the same specimen_id form a
specimen (a panel), as for interpretation. Earlier rows of the same patient_id are that patient's previous
results: the file need not be sorted by patient, but each patient's rows are read in the order given; with
collected_at, a result is compared only with an earlier-collected one (a row collected before the patient's
latest kept result of that analyte has nothing to be compared with). Only released results become previous
results (a held result may be wrong: it is what the rules question). Memory holds one block of specimens and
each patient's latest released result per analyte: bounded by patients, not rows. Each row comes out as it
came, with disposition, verification_actions, verification_reasons, flag and error appended.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from labinterp.core.columnar import EMPTY_LINE, RANGE_COLUMNS, ChunkOutput, Coded, ColumnarInterpreter
from labinterp.core.engine import Engine
from labinterp.core.model import COMPARATOR_CODES, COMPARATORS, HEMOLYSIS
from labinterp.core.numbers import read_result
from labinterp.core.outcomes import REASONS, Verdict
from labinterp.core.verification import (
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
    index_problem,
    micros,
    result_reasons,
    utc,
)
from labinterp.files import csvfile
from labinterp.files.csvfile import NEWLINE, CsvHeaderError, CsvLimits, CsvReader, Rows, collector_paused
from labinterp.render.verify import csv_cells

__all__ = ["ADDED", "OPTIONAL", "REQUIRED", "CsvHeaderError", "History", "VerifyJob"]

REQUIRED = csvfile.REQUIRED
OPTIONAL = ("patient_id", "collected_at", "hemolysis_index", "hemolysis", "comparator", "age_years", "age_days",
            "sex", "specimen", *RANGE_COLUMNS)
ADDED = ("disposition", "verification_actions", "verification_reasons", "flag", "error")
BLOCK_BYTES = csvfile.BLOCK_BYTES  # read at a time (whole specimens): one pass of the file path per block
MAX_RESULTS = 10_000  # distinct results of the file path, with their verification, kept before starting again
MAX_READINGS = 10_000  # each column's distinct readings (times, indices, ...) kept before starting again
_CMP_OF = (None, *COMPARATORS)  # a comparator by its code (COMPARATOR_CODES)
_BAD = -1  # a comparator's code for a text that cannot be read (the row's error says why)
_BAD_TIME = UNTIMED + 1  # a time's for one (no date-time is this many microseconds before 1970)


class _Decision:
    """A result's verification with its CSV cells and its counts' reasons, worked out once."""

    __slots__ = ("verification", "released", "cells", "codes", "texts", "render")

    def __init__(self, rules: VerificationRules, v: Verification, render: Callable[[list[str]], str]):
        self.verification = v
        self.released = v.disposition == "release"
        self.cells = csv_cells(rules, v)
        self.codes = tuple((r.code, r.action, r.holds) for r in v.reasons)
        self.texts: dict[str | None, bytes] = {}  # the appended cells as CSV text with the line end, per flag
        self.render = render

    def text(self, flag: str | None) -> bytes:
        found = self.texts.get(flag)
        if found is None:
            found = self.texts[flag] = self.render(["", *self.cells, flag or "", ""]).encode("utf-8") + NEWLINE
        return found


_Decided = tuple[tuple[Reason, ...], _Decision]  # a result's own reasons, and its decision if no other rule adds
_Entry = tuple[Measured, _Decided]  # a distinct result of a block: its facts, own reasons and decision
# a distinct result's analyte code, value, comparator code, low flag code (ResultColumns.low) and whether the rules
# that read it alone release it
_Columns = tuple[int, float, int, int, bool]
_COLUMNS = 5  # the items of _Columns


@dataclass
class _Block:
    """What verification reads of a block beyond the interpreter's columns: per row its specimen, time in
    microseconds (UNTIMED: none), time as given (the reasons show it), haemolysis grade and index; per specimen
    its patient_id."""

    spec_of_row: npt.NDArray[np.int64]
    patient_ids: list[str | None]
    micros: npt.NDArray[np.int64]
    moments: npt.NDArray[np.object_]
    rest_of_row: npt.NDArray[np.int64]  # per row, its haemolysis grade and index: an index into rest
    rest: list[tuple[str | None, float | None]]


def _used(coded: Coded) -> tuple[npt.NDArray[np.int64], list[str]]:
    """The texts a block's rows use, and each row's index into them (found by counting the codes: no sort)."""
    codes = coded.codes
    used = np.flatnonzero(np.bincount(codes, minlength=len(coded.texts)))
    number = np.empty(len(coded.texts), dtype=np.int64)
    number[used] = np.arange(len(used))
    return number[codes], list(map(coded.texts.__getitem__, used.tolist()))


class _Readings(dict):  # type: ignore[type-arg]
    """A column's reading of each distinct text, computed once (files repeat times, indices and spellings)."""

    def __init__(self, read: Callable[[str], Any]):
        super().__init__()
        self.read = read

    def __missing__(self, text: str) -> Any:
        value = self[text] = self.read(text)
        return value

    def of(self, coded: Coded) -> tuple[npt.NDArray[np.int64], list[Any]]:
        """The readings of the texts the rows use, and each row's index into them."""
        if len(self) > MAX_READINGS:
            self.clear()
        at, texts = _used(coded)
        return at, list(map(self.__getitem__, texts))


def _comparator(text: str) -> int:
    """A comparator column's code (0: none given; _BAD: not a comparator)."""
    stripped = text.strip()
    return COMPARATOR_CODES.get(stripped, _BAD) if stripped else 0


def _time(text: str) -> tuple[int, datetime | None]:
    """A time's microseconds (UNTIMED: none given; _BAD_TIME: not an ISO 8601 date-time) and the time as given."""
    stamp = text.strip()
    if not stamp:
        return UNTIMED, None
    try:
        moment = utc(datetime.fromisoformat(stamp))
    except ValueError:
        return _BAD_TIME, None
    return micros(moment), moment


def _index(text: str) -> float | None | bool:
    """A haemolysis index (None: none given; False: not a readable index, as index_problem says)."""
    stripped = text.strip()
    if not stripped:
        return None
    read = read_result(stripped)
    if read is None or index_problem(read[0], read[1] is not None) is not None:
        return False
    return read[0]


def _grade(text: str) -> str | None | bool:
    """A haemolysis grade (None: none given; False: not one of HEMOLYSIS)."""
    stripped = text.strip()
    return (stripped if stripped in HEMOLYSIS else False) if stripped else None


class VerifyJob:
    """Iterate to get the output CSV in blocks of bytes; `summary` is complete once iterated.

    The file is read by the interpret path's reader (CsvReader) and a block's results are interpreted by the file
    path (ColumnarInterpreter: the interpretation rules once per distinct key), whose row errors are the rows'
    errors, with the problems of the columns verification reads (patient_id, collected_at, hemolysis_index,
    hemolysis, comparator) among them; the rules that read one result alone are applied once per distinct result
    (result_reasons), the specimen and history rules to the whole block at once (SpecimenFindings, the arrays
    /v1/verify's one panel also goes through)."""

    def __init__(self, engine: Engine, rules: dict[str | None, VerificationRules], lab: str | None,
                 source: IO[bytes], progress: Callable[[VerifySummary], None] | None = None,
                 block_bytes: int | None = None, limits: CsvLimits | None = None):
        self.progress = progress
        self.knowledge = engine.profile(lab)  # raises InvalidInput for an unknown laboratory
        self.rules = rules[lab]
        self.interpreter = ColumnarInterpreter(engine, lab)
        self.reader = CsvReader(source, OPTIONAL, BLOCK_BYTES if block_bytes is None else block_bytes, limits)
        self.history = History()
        self.summary = VerifySummary()
        # Per distinct result of the file path: its facts and the reasons of the rules that read it alone.
        self._results: dict[tuple[Hashable, ...], tuple[MeasuredResult, _Decided, _Columns]] = {}
        self._generation = self.interpreter.generation
        render = self.reader.render
        self._released = _Decision(self.rules, RELEASED, render)
        self._decisions: dict[tuple[Reason, ...], _Decision] = {}  # by reasons, for the rows held by history rules
        self._readings = {"comparator": _Readings(_comparator), "collected_at": _Readings(_time),
                          "hemolysis_index": _Readings(_index), "hemolysis": _Readings(_grade)}
        words = self.knowledge.words

        def field(name: str, reason: str) -> str:
            return words["refusal.row_field"].format(field=name, reason=reason)

        self._problems = {  # each column's problem, in the data's words
            "comparator": field("comparator", words["refusal.invalid_choice"].format(choices=list(COMPARATORS))),
            "comparator_conflict": field("comparator", words["refusal.comparator_conflict"]),
            "collected_at": field("collected_at", words["refusal.not_a_date_time"]),
            "hemolysis_index": field("hemolysis_index", words["refusal.bound_invalid"]),
            "hemolysis": field("hemolysis", words["refusal.invalid_choice"].format(choices=list(HEMOLYSIS))),
        }

    # ------------------------------------------------------------------ output
    def __iter__(self) -> Iterator[bytes]:
        reader = self.reader
        yield (reader.header_text + reader.sep + reader.render(reader.appended(ADDED))).encode("utf-8") + NEWLINE
        for rows in reader.blocks():
            with collector_paused():
                block = self._block(rows)
            if self.progress is not None:
                self.progress(self.summary)
            yield block

    def _block(self, rows: Rows) -> bytes:
        block, problems = self._read(rows)
        table, codes, columns, errors = self._interpret(rows, block, problems)
        self._verify(block, table, codes, columns)
        # rows alike (the same result, the same decision) share their cells and are counted together
        distinct, first, alike = np.unique(codes, return_index=True, return_inverse=True)
        texts: list[bytes] = [b""] * len(distinct)
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
        added = list(map(texts.__getitem__, alike.reshape(-1).tolist()))
        render = self.reader.render
        for i, message in errors.items():
            self.summary.errors += 1
            added[i] = render(["", "", "", "", "", message]).encode("utf-8") + NEWLINE
        sep = self.reader.sep
        for i, extra in rows.long_rows.items():  # fields beyond the header go after the appended columns
            added[i] = added[i][:-len(NEWLINE)] + (sep + extra).encode("utf-8") + NEWLINE
        pieces: list[bytes] = [b""] * (2 * len(added))  # each row's input as read, then its appended cells
        pieces[::2], pieces[1::2] = rows.raws, added
        return b"".join(pieces)

    # ------------------------------------------------------------------ input
    def _read(self, rows: Rows) -> tuple[_Block, dict[int, list[str]]]:
        """The columns verification reads, once per distinct text: the block's specimens and their patient_ids,
        each row's time; the comparator column merged into the values (where the value has none); and each row's
        problems with these columns (the interpreter makes them the row's error)."""
        chunk, extra = rows.chunk, rows.extra
        n = len(chunk)
        new_specimen = chunk.new_panel.copy()
        if n:
            new_specimen[0] = True
        spec_of_row = np.cumsum(new_specimen) - 1
        starts = np.flatnonzero(new_specimen)
        problems: dict[int, list[str]] = {}

        def flag(rows_: npt.NDArray[np.int64], problem: str) -> None:
            for i in rows_.tolist():
                problems.setdefault(i, []).append(problem)

        readings = self._readings
        patient_ids: list[str | None] = [None] * len(starts)
        if "patient_id" in extra:
            at, texts = _used(extra["patient_id"])  # ever new texts: stripped, not remembered
            ids = [t.strip() or None for t in texts]
            patient_ids = [ids[a] for a in at[starts].tolist()]
            number: dict[str | None, int] = {}  # texts alike once stripped are one patient_id
            same = np.array([number.setdefault(i, len(number)) for i in ids], dtype=np.int64)[at]
            differs = np.flatnonzero(same != same[starts][spec_of_row])
            words = self.knowledge.words
            for i in differs.tolist():
                problems.setdefault(i, []).append(words["refusal.row_patient_id_differs"].format(
                    line=int(chunk.lines[starts[spec_of_row[i]]])))
        if "comparator" in extra:
            at, found = readings["comparator"].of(extra["comparator"])
            given = np.array(found, dtype=np.int8)[at]
            flag(np.flatnonzero(given == _BAD), self._problems["comparator"])
            value_cmp = chunk.value.comparator
            flag(np.flatnonzero((given > 0) & (value_cmp > 0) & (given != value_cmp)),
                 self._problems["comparator_conflict"])
            chunk.value.comparator = np.where((given > 0) & (value_cmp == 0), given, value_cmp).astype(np.int8)
        times = np.full(n, UNTIMED, dtype=np.int64)
        moments = np.full(n, None, dtype=object)
        if "collected_at" in extra:
            at, found = readings["collected_at"].of(extra["collected_at"])
            times = np.array([t for t, _ in found], dtype=np.int64)[at]
            moments = np.array([m for _, m in found], dtype=object)[at]
            bad = times == _BAD_TIME
            if bad.any():
                flag(np.flatnonzero(bad), self._problems["collected_at"])
                times[bad] = UNTIMED
        # a result's haemolysis grade and index (a distinct pair per code)
        rest_of_row = np.zeros(n, dtype=np.int64)
        rest: list[tuple[str | None, float | None]] = [(None, None)]
        pair: list[tuple[npt.NDArray[np.int64], list[Any]]] = []
        for name in ("hemolysis", "hemolysis_index"):
            if name in extra:
                at, found = readings[name].of(extra[name])
                bad = np.array([f is False for f in found], dtype=bool)[at]
                flag(np.flatnonzero(bad), self._problems[name])
                pair.append((at, [None if f is False else f for f in found]))
            else:
                pair.append((np.zeros(n, dtype=np.int64), [None]))
        if any(given != [None] for _, given in pair):  # a grade or an index in the block
            (grade_at, grades), (index_at, indices) = pair
            keys, rest_of_row = np.unique(grade_at * len(indices) + index_at, return_inverse=True)
            rest_of_row = rest_of_row.reshape(-1)
            rest = [(grades[k // len(indices)], indices[k % len(indices)]) for k in keys.tolist()]
        return _Block(spec_of_row, patient_ids, times, moments, rest_of_row, rest), problems

    # ------------------------------------------------------------------ interpretation
    def _interpret(self, rows: Rows, block: _Block, problems: dict[int, list[str]],
                   ) -> tuple[list[_Entry], npt.NDArray[np.int64], list[_Columns], dict[int, str]]:
        """The block interpreted by the file path, each specimen a panel, the problems of the columns verification
        reads among each row's reasons; then, once per distinct result, the rules that read one result alone.
        Returns the distinct results (facts and own reasons), each row's (-1: the row is in error), each distinct
        result's columns as the specimen and history rules read them, and the rows' errors."""
        chunk = rows.chunk
        n = len(chunk)
        for i, found in problems.items():
            before = chunk.row_problems.get(i)
            if before != EMPTY_LINE:  # an empty line's error is that alone
                chunk.row_problems[i] = "; ".join([before, *found] if before else found)
        out = self.interpreter.interpret(chunk)
        errors = {**out.errors, **rows.own_errors} if rows.own_errors else out.errors
        assert out.reasons is not None and out.selections is not None and out.analytes is not None
        if self._generation != self.interpreter.generation or len(self._results) > MAX_RESULTS:
            self._results.clear()  # its keys are only valid within one generation of the file path's caches
            self._generation = self.interpreter.generation
        codes = np.full(n, -1, dtype=np.int64)
        if errors:
            good = np.ones(n, dtype=bool)
            good[list(errors)] = False
            chosen = np.flatnonzero(good)
        else:
            chosen = np.arange(n)  # the rows derived after them (corrected calcium) are not verified
        table: list[_Entry] = []
        columns_of: list[_Columns] = []
        if len(chosen):
            # a result of the file path is known by its codes, comparator, haemolysis grade and index: its facts
            # and own reasons are worked out once per distinct key
            columns = [out.codes[chosen], out.value_codes[chosen], out.reasons[chosen], out.selections[chosen],
                       out.analytes[chosen], chunk.value.comparator[chosen].astype(np.int64),
                       block.rest_of_row[chosen]]
            first, inverse = _distinct_rows(columns)
            keys, values, rest = out.keys, out.values, block.rest
            distinct_keys = [(keys[c], values[v], reason, sel, analyte, cmp, rest[r])
                             for c, v, reason, sel, analyte, cmp, r in np.stack(columns, axis=1)[first].tolist()]
            seen = list(map(self._results.get, distinct_keys))  # None: not seen yet
            entries = [found if found is not None else self._result(out, key)
                       for found, key in zip(seen, distinct_keys, strict=True)]
            table = [(fact, own) for fact, own, _ in entries]
            columns_of = [mine for _, _, mine in entries]
            codes[chosen] = inverse
        return table, codes, columns_of, errors

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
        return reasons, (self._released if not reasons else _Decision(self.rules, decided(reasons),
                                                                      self.reader.render))

    # ------------------------------------------------------------------ verification
    def _verify(self, read: _Block, table: list[_Entry], codes: npt.NDArray[np.int64],
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
        patient = history.patient_codes(read.patient_ids)[spec]
        key = np.where(patient >= 0, (patient << _ANALYTE_BITS) | analyte, -1)
        kept = history.kept(_distinct(key[key >= 0]))  # the latest kept result of each (patient, analyte) here
        k = len(kept.key)
        previous = PreviousColumns(np.append(kept.key & _ANALYTE_MASK, analyte), np.append(kept.value, value),
                                   np.append(kept.off_scale, comparator != 0), np.append(kept.time, time),
                                   np.append(kept.timed, timed), np.append(kept.moments, read.moments[live]))
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
                    d = self._decisions[mine] = _Decision(rules, decided(reasons), self.reader.render)
                code = made[(at, mine)] = len(table)
                table.append((table[at][0], (mine, d)))
            codes[live[i]] = code
        history.keep(scan.groups, after, previous, k)


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
