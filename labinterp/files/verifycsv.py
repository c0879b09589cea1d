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
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime
from typing import IO

import numpy as np

from labinterp.core.columnar import ChunkOutput, Coded, ColumnarInterpreter, Numbers, RowChunk
from labinterp.core.engine import Engine, Staged
from labinterp.core.errors import InvalidInput
from labinterp.core.model import COMPARATORS, HEMOLYSIS, Panel, Patient, ResultInput
from labinterp.core.outcomes import REASONS, Verdict
from labinterp.core.patients import patient, sex_of
from labinterp.core.verification import (
    RELEASED,
    Measured,
    MeasuredResult,
    PreviousResult,
    Reason,
    Verification,
    VerificationRules,
    VerifySummary,
    decided,
    result_reasons,
    specimen_reasons,
    utc,
)
from labinterp.render.verify import csv_cells

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("patient_id", "collected_at", "hemolysis_index", "hemolysis", "comparator", "age_years", "age_days",
            "sex", "specimen")
ADDED = ("disposition", "verification_actions", "verification_reasons", "flag", "error")
BLOCK_ROWS = 5000  # rows (whole specimens) interpreted together: one pass of the file path per block
MAX_KNOWN = 200_000  # entries of each per-file cache before it starts again (memory bounded whatever the file)
MAX_FIELD = 1 << 16
_CMP_CODE = {None: 0, "<": 1, "<=": 2, ">": 3, ">=": 4}
_CMP_OF = (None, "<", "<=", ">", ">=")


class CsvHeaderError(ValueError):
    """The header lacks a required column (or the file is not CSV)."""


class _Decision:
    """A result's verification with its CSV cells and its counts' reasons, worked out once."""

    __slots__ = ("verification", "cells", "codes")

    def __init__(self, rules: VerificationRules, v: Verification):
        self.verification = v
        self.cells = csv_cells(rules, v)
        self.codes = tuple((r.code, r.action, r.holds) for r in v.reasons)


_Decided = tuple[tuple[Reason, ...], _Decision]  # a result's own reasons, and its decision if no other rule adds


class VerifyJob:
    """Iterate to get the output CSV in blocks of bytes; `summary` is complete once iterated.

    A block's results are interpreted by the file path (ColumnarInterpreter: the interpretation rules
    once per distinct key); the rules that read one result alone are applied once per distinct result
    (result_reasons), the specimen and history rules per specimen (specimen_reasons); rows the file
    path refuses are interpreted by the engine, whose refusal is the row's error."""

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
        self.reader = csv.reader(self.text, delimiter=delimiter)
        self.header = [h.strip() for h in self.header]
        missing = [c for c in REQUIRED if c not in {h.lower() for h in self.header}]
        if missing:
            raise CsvHeaderError(f"the header lacks the required columns {missing} (has {self.header})")
        self.column = {name.lower(): i for i, name in enumerate(self.header)}
        self.history: dict[str, dict[str, PreviousResult]] = {}
        self.summary = VerifySummary()
        # The engine's outcome (or refusal) per distinct (result, patient), for the rows the file path refuses.
        self.known: dict[tuple[ResultInput, Patient], Measured | str] = {}
        # Per distinct result of the file path: its facts and the reasons of the rules that read it alone.
        self._results: dict[tuple[Hashable, ...], tuple[MeasuredResult, _Decided]] = {}
        self._generation = self.interpreter.generation
        self._released = _Decision(self.rules, RELEASED)
        self._numbers: dict[tuple[str, str], float | str] = {}  # (text, column) -> number, or its error
        self._times: dict[str, datetime | str] = {}  # collected_at text -> UTC time, or its error
        self._patients: dict[tuple[str, str, str], tuple[Patient, tuple[str, str, str]] | str] = {}

    # ------------------------------------------------------------------ output
    def __iter__(self) -> Iterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([*self.header, *ADDED])
        yield out.getvalue().encode()
        block: list[list[str]] = []
        sids: list[str] = []
        sid_column = self.column["specimen_id"]
        while True:
            try:
                fields = next(self.reader)
            except StopIteration:
                break
            except csv.Error as exc:
                fields = [f"<unreadable line: {exc}>"]
            if not fields:
                continue
            sid = fields[sid_column].strip() if sid_column < len(fields) else ""
            if len(block) >= BLOCK_ROWS and sid != sids[-1]:  # blocks end between specimens
                yield self._block(block, sids)
                block, sids = [], []
            block.append(fields)
            sids.append(sid)
        if block:
            yield self._block(block, sids)

    def _block(self, rows: list[list[str]], sids: list[str]) -> bytes:
        for cache in (self._numbers, self._times, self._patients, self.known):
            if len(cache) > MAX_KNOWN:
                cache.clear()  # memory stays bounded whatever the file
        n = len(rows)
        errors: list[str | None] = [None] * n
        facts: list[Measured | None] = [None] * n
        base: list[_Decided | None] = [None] * n  # the reasons of the rules that read the result alone
        times: list[datetime | None] = [None] * n
        indices: list[float | None] = [None] * n
        specimens: list[tuple[int, int, str | None]] = []  # (first row, row after the last, patient_id)
        inputs: list[tuple[int, ResultInput, Patient, tuple[str, str, str]]] = []
        start = 0
        for end in range(1, n + 1):
            if end == n or sids[end] != sids[start]:
                specimens.append((start, end, self._read_specimen(rows, start, end, errors, times, indices,
                                                                  inputs)))
                start = end
        self._interpret(inputs, indices, facts, base, errors)
        decisions = self._verify(specimens, facts, base, times)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        counts: Counter[tuple[str, str, tuple[tuple[str, str, bool], ...]]] = Counter()
        lines: list[list[str]] = []
        for i in range(n):
            d = decisions[i]
            fact = facts[i]
            if d is None or fact is None:
                self.summary.errors += 1
                lines.append([*rows[i], "", "", "", "", errors[i] or "not interpreted"])
                continue
            disposition, actions, reasons = d.cells
            counts[(fact.analyte, disposition, d.codes)] += 1
            lines.append([*rows[i], disposition, actions, reasons, fact.verdict.flag or "", ""])
        writer.writerows(lines)
        for (analyte, disposition, codes), times_seen in counts.items():
            self.summary.count(analyte, disposition, codes, times_seen)
        if self.progress is not None:
            self.progress(self.summary)
        return out.getvalue().encode()

    # ------------------------------------------------------------------ input
    def _read_specimen(self, rows: list[list[str]], start: int, end: int, errors: list[str | None],
                       times: list[datetime | None], indices: list[float | None],
                       inputs: list[tuple[int, ResultInput, Patient, tuple[str, str, str]]]) -> str | None:
        """Read one specimen's rows: their errors, times and indices, and the results to interpret."""
        first = rows[start]
        patient_id = self._get(first, "patient_id") or None
        who = self._patient(first)
        width = len(self.header)
        c = self.column
        pid_col, value_col, cmp_col = c.get("patient_id"), c["value"], c.get("comparator")
        time_col, index_col, analyte_col, unit_col = c.get("collected_at"), c.get("hemolysis_index"), c["analyte"], \
            c["unit"]
        spec_col, hem_col = c.get("specimen"), c.get("hemolysis")
        for i in range(start, end):
            fields = rows[i]
            if isinstance(who, str):
                errors[i] = who
                continue
            if len(fields) != width:
                errors[i] = f"row has {len(fields)} fields, the header {width}"
                continue
            if (fields[pid_col].strip() if pid_col is not None else "") != (patient_id or ""):
                errors[i] = "patient_id differs from an earlier row with this specimen_id"
                continue
            value = self._number(fields[value_col], "value")
            if isinstance(value, str):
                errors[i] = value
                continue
            comparator = (fields[cmp_col].strip() or None) if cmp_col is not None else None
            if comparator is not None and comparator not in COMPARATORS:
                errors[i] = f"comparator: must be one of {list(COMPARATORS)}"
                continue
            stamp = fields[time_col].strip() if time_col is not None else ""
            if stamp:
                moment = self._time(stamp)
                if isinstance(moment, str):
                    errors[i] = moment
                    continue
                times[i] = moment
            index = fields[index_col].strip() if index_col is not None else ""
            if index:
                number = self._number(index, "hemolysis_index")
                if isinstance(number, str):
                    errors[i] = number
                    continue
                indices[i] = number
            result = ResultInput(fields[analyte_col].strip(), value, fields[unit_col].strip(), comparator=comparator,
                                 specimen=(fields[spec_col].strip() or None) if spec_col is not None else None,
                                 hemolysis=(fields[hem_col].strip() or None) if hem_col is not None else None)
            inputs.append((i, result, *who))
        return patient_id

    def _get(self, fields: list[str], name: str) -> str:
        i = self.column.get(name)
        return fields[i].strip() if i is not None and i < len(fields) else ""

    def _patient(self, fields: list[str]) -> tuple[Patient, tuple[str, str, str]] | str:
        """The specimen's patient and its columns as the file path reads them (the same patient), or the error."""
        key = (self._get(fields, "age_years"), self._get(fields, "age_days"), self._get(fields, "sex"))
        found = self._patients.get(key)
        if found is None:
            years, days, sex = key
            try:
                sex_value = None
                if sex:
                    sex_value = sex_of(sex)
                    if sex_value is None:
                        raise ValueError(f"sex: unknown '{sex[:20]}'")
                age_years = _number(years, "age_years") if years else None
                age_days = _number(days, "age_days") if days else None
                who = patient(age_years, age_days, sex_value)
                # days win when both are given (patient()): the file path is given only what is used
                shown = ("", repr(age_days), sex) if age_days is not None else (
                    "" if age_years is None else repr(age_years), "", sex)
                found = (who, shown)
            except ValueError as exc:
                found = str(exc)
            self._patients[key] = found
        return found

    def _number(self, text: str, name: str) -> float | str:
        found = self._numbers.get((text, name))
        if found is None:
            try:
                found = _number(text, name)
            except ValueError as exc:
                found = str(exc)
            self._numbers[(text, name)] = found
        return found

    def _time(self, stamp: str) -> datetime | str:
        found = self._times.get(stamp)
        if found is None:
            try:
                found = utc(datetime.fromisoformat(stamp))
            except ValueError:
                found = "collected_at: not an ISO 8601 date-time"
            self._times[stamp] = found
        return found

    # ------------------------------------------------------------------ interpretation
    def _interpret(self, inputs: list[tuple[int, ResultInput, Patient, tuple[str, str, str]]],
                   indices: list[float | None], facts: list[Measured | None], base: list[_Decided | None],
                   errors: list[str | None]) -> None:
        """Each result interpreted alone, as its own panel: by the file path, and the rows it refuses (or
        whose haemolysis grade it does not read) by the engine; then the rules that read one result alone."""
        by_engine = [(i, r, who) for i, r, who, _ in inputs if r.hemolysis is not None and r.hemolysis not in HEMOLYSIS]
        inputs = [x for x in inputs if x[1].hemolysis is None or x[1].hemolysis in HEMOLYSIS]
        if inputs:
            out = self._columnar(inputs)
            assert out.reasons is not None and out.selections is not None and out.analytes is not None
            if self._generation != self.interpreter.generation or len(self._results) > MAX_KNOWN:
                self._results.clear()  # its keys are only valid within one generation of the file path's caches
                self._generation = self.interpreter.generation
            codes, value_codes = out.codes.tolist(), out.value_codes.tolist()
            reasons, selections, analytes = out.reasons.tolist(), out.selections.tolist(), out.analytes.tolist()
            for r, (i, result, who, _) in enumerate(inputs):
                if r in out.errors:
                    by_engine.append((i, result, who))
                    continue
                verdict_key, value = out.keys[codes[r]], out.values[value_codes[r]]
                key = (verdict_key, analytes[r], value, result.comparator, result.hemolysis, reasons[r], selections[r],
                       indices[i])
                found = self._results.get(key)
                if found is None:
                    verdict = out.verdicts[verdict_key]
                    assert verdict is not None
                    critical, interval_reason = self.interpreter.selected(selections[r])
                    a = analytes[r]
                    fact = MeasuredResult(self.interpreter.analytes[a], value, result.comparator, result.hemolysis,
                                          Verdict(verdict.classification, verdict.flag, verdict.critical,
                                                  REASONS[reasons[r]], verdict.grade),
                                          critical, self.interpreter.implausible[a], interval_reason)
                    found = self._results[key] = (fact, self._decided(fact, indices[i]))
                facts[i], base[i] = found
        if by_engine:
            self._interpret_new([(result, who) for _, result, who in by_engine])
            for i, result, who in by_engine:
                known = self.known[(result, who)]
                if isinstance(known, str):
                    errors[i] = known
                else:
                    facts[i], base[i] = known, self._decided(known, indices[i])

    def _decided(self, fact: Measured, index: float | None) -> _Decided:
        reasons = result_reasons(self.rules, fact, index)
        return reasons, (self._released if not reasons else _Decision(self.rules, decided(reasons)))

    def _columnar(self, inputs: list[tuple[int, ResultInput, Patient, tuple[str, str, str]]]) -> ChunkOutput:
        """The file path over the results, each its own panel (a result's verdict is its own), with its
        specimen's patient."""
        n = len(inputs)
        results = [r for _, r, _, _ in inputs]
        shown = [s for _, _, _, s in inputs]
        value = np.fromiter((float(r.value) for r in results), np.float64, n)
        comparator = np.fromiter((_CMP_CODE[r.comparator] for r in results), np.int8, n)

        def texts(column: str, rows: list[int]) -> list[str]:  # for the file path's own error messages
            return [repr(float(results[r].value)) if column == "value" else "" for r in rows]

        chunk = RowChunk(np.ones(n, dtype=bool), np.zeros(n, dtype=bool), Coded.of([r.analyte for r in results]),
                         Numbers(value, comparator, np.zeros(n, dtype=bool)), Coded.of([str(r.unit) for r in results]),
                         np.arange(1, n + 1, dtype=np.int64), texts,
                         Coded.of([s[0] for s in shown]), Coded.of([s[1] for s in shown]),
                         Coded.of([s[2] for s in shown]), Coded.of([r.specimen or "" for r in results]))
        return self.interpreter.interpret(chunk)

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
    def _verify(self, specimens: list[tuple[int, int, str | None]], facts: list[Measured | None],
                base: list[_Decided | None], times: list[datetime | None]) -> list[_Decision | None]:
        """The specimen and history rules per specimen, in file order; released results become their
        patient's previous results."""
        decisions: list[_Decision | None] = [None] * len(facts)
        rules, history = self.rules, self.history
        for start, end, patient_id in specimens:
            live = [i for i in range(start, end) if facts[i] is not None]
            if not live:
                continue
            results: list[Measured] = [facts[i] for i in live]  # type: ignore[misc]
            per: list[list[Reason]] = []
            for i in live:
                found = base[i]
                assert found is not None
                per.append(list(found[0]))
            previous = tuple(history[patient_id].values()) if patient_id in history else ()
            specimen_reasons(rules, results, [times[i] for i in live], previous, per)
            for reasons, i in zip(per, live, strict=True):
                found = base[i]
                assert found is not None
                decisions[i] = found[1] if len(reasons) == len(found[0]) else _Decision(rules, decided(reasons))
            if patient_id:
                kept = history.setdefault(patient_id, {})
                for result, i in zip(results, live, strict=True):
                    d = decisions[i]
                    assert d is not None
                    if d.verification.disposition != "release":
                        continue
                    before = kept.get(result.analyte)
                    moment = times[i]
                    if (before is not None and before.collected_at is not None and moment is not None
                            and moment < before.collected_at):
                        continue  # an older result arriving late does not replace a newer one
                    kept[result.analyte] = PreviousResult(result.analyte, result.value, result.comparator, moment)
        return decisions


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number, not negative")
    return value
