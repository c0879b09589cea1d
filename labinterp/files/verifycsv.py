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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from labinterp.core.engine import Engine, Staged
from labinterp.core.errors import InvalidInput
from labinterp.core.model import COMPARATORS, Panel, Patient, ResultInput
from labinterp.core.outcomes import Outcome, PanelOutcome
from labinterp.core.patients import patient, sex_of
from labinterp.core.verification import (
    PanelVerification,
    PreviousResult,
    VerificationRules,
    VerifySummary,
    utc,
    verify,
)
from labinterp.render.verify import csv_cells

REQUIRED = ("specimen_id", "analyte", "value", "unit")
OPTIONAL = ("patient_id", "collected_at", "hemolysis_index", "hemolysis", "comparator", "age_years", "age_days",
            "sex", "specimen")
ADDED = ("disposition", "verification_actions", "verification_reasons", "flag", "error")
BLOCK_ROWS = 2000  # specimens are interpreted together, a block at a time (one classification per block)
MAX_KNOWN = 200_000  # distinct (result, patient) outcomes remembered before the memo starts again
MAX_FIELD = 1 << 16


class CsvHeaderError(ValueError):
    """The header lacks a required column (or the file is not CSV)."""


@dataclass
class _Row:
    fields: list[str]
    index: int  # position in its specimen (its result index), -1: refused before the panel
    error: str | None = None
    result: ResultInput | None = None
    collected_at: datetime | None = None
    hemolysis_index: float | None = None


@dataclass
class _Specimen:
    rows: list[_Row]
    patient: Patient | None
    patient_id: str | None


class VerifyJob:
    """Iterate to get the output CSV in blocks of bytes; `summary` is complete once iterated."""

    def __init__(self, engine: Engine, rules: dict[str | None, VerificationRules], lab: str | None,
                 source: IO[bytes], progress: Callable[[VerifySummary], None] | None = None):
        self.engine, self.lab, self.progress = engine, lab, progress
        self.knowledge = engine.profile(lab)  # raises InvalidInput for an unknown laboratory
        self.rules = rules[lab]
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
        # The engine's outcome (or refusal) per distinct (result, patient): a result's verdict does not
        # depend on the other results of its specimen, so each distinct one is interpreted once.
        self.known: dict[tuple[ResultInput, Patient | None], Outcome | str] = {}

    # ------------------------------------------------------------------ output
    def __iter__(self) -> Iterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([*self.header, *ADDED])
        yield out.getvalue().encode()
        block: list[_Specimen] = []
        rows_in_block = 0
        for specimen in self._specimens():
            block.append(specimen)
            rows_in_block += len(specimen.rows)
            if rows_in_block >= BLOCK_ROWS:
                yield self._block(block)
                block, rows_in_block = [], 0
        if block:
            yield self._block(block)

    def _block(self, block: list[_Specimen]) -> bytes:
        self._interpret_new([(row.result, s.patient) for s in block for row in s.rows if row.result is not None])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        for specimen in block:
            live: list[Outcome] = []
            for row in specimen.rows:
                if row.result is None or row.error is not None:
                    continue
                known = self.known[(row.result, specimen.patient)]
                if isinstance(known, str):
                    row.error = known
                    continue
                row.index = len(live)
                live.append(known)  # verify reads results by position: the memo's index is not used
            pv = self._verify(specimen, PanelOutcome(tuple(live), (), (), self.knowledge)) if live else None
            for row in specimen.rows:
                writer.writerow([*row.fields, *self._cells(row, pv)])
        if self.progress is not None:
            self.progress(self.summary)
        return out.getvalue().encode()

    def _interpret_new(self, keys: list[tuple[ResultInput, Patient | None]]) -> None:
        """Interpret the results not seen before, all in one classification; remember outcomes and refusals."""
        if len(self.known) > MAX_KNOWN:
            self.known.clear()  # memory stays bounded whatever the file
        staged: list[tuple[tuple[ResultInput, Patient | None], Staged]] = []
        seen: set[tuple[ResultInput, Patient | None]] = set()
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

    def _verify(self, specimen: _Specimen, outcome: PanelOutcome) -> PanelVerification:
        live = [r for r in specimen.rows if r.index >= 0 and r.error is None and r.result is not None]
        times = [r.collected_at for r in live]
        indices = [r.hemolysis_index for r in live]
        previous = tuple(self.history.get(specimen.patient_id, {}).values()) if specimen.patient_id else ()
        pv = verify(outcome, times, indices, previous, self.rules)
        if specimen.patient_id:
            kept = self.history.setdefault(specimen.patient_id, {})
            for result, v, row in zip(outcome.results, pv.results, live, strict=True):
                if v.disposition != "release":
                    continue
                before = kept.get(result.analyte)
                if (before is not None and before.collected_at is not None and row.collected_at is not None
                        and row.collected_at < before.collected_at):
                    continue  # an older result arriving late does not replace a newer one
                kept[result.analyte] = PreviousResult(result.analyte, result.value, result.comparator,
                                                      row.collected_at)
        return pv

    def _cells(self, row: _Row, pv: PanelVerification | None) -> list[str]:
        if row.error is not None or pv is None:
            self.summary.errors += 1
            return ["", "", "", "", row.error or "not interpreted"]
        result = pv.outcome.results[row.index]
        v = pv.results[row.index]
        disposition, actions, reasons = csv_cells(self.rules, v)
        self.summary.count(result.analyte, disposition, [(r.code, r.action, r.holds) for r in v.reasons])
        return [disposition, actions, reasons, result.verdict.flag or "", ""]

    # ------------------------------------------------------------------ input
    def _specimens(self) -> Iterator[_Specimen]:
        rows: list[list[str]] = []
        current: str | None = None
        while True:
            try:
                fields = next(self.reader)
            except StopIteration:
                break
            except csv.Error as exc:
                fields = [f"<unreadable line: {exc}>"]
            if not fields:
                continue
            sid = self._get(fields, "specimen_id")
            if rows and sid != current:
                yield self._specimen(rows)
                rows = []
            current = sid
            rows.append(fields)
        if rows:
            yield self._specimen(rows)

    def _get(self, fields: list[str], name: str) -> str:
        i = self.column.get(name)
        return fields[i].strip() if i is not None and i < len(fields) else ""

    def _specimen(self, raw: list[list[str]]) -> _Specimen:
        rows: list[_Row] = []
        first = raw[0]
        patient_id = self._get(first, "patient_id") or None
        try:
            who: Patient | None = self._patient(first)
            patient_error = None
        except ValueError as exc:
            who, patient_error = None, str(exc)
        for fields in raw:
            row = _Row(fields, -1)
            rows.append(row)
            if patient_error is not None:
                row.error = patient_error
                continue
            if len(fields) != len(self.header):
                row.error = f"row has {len(fields)} fields, the header {len(self.header)}"
                continue
            if self._get(fields, "patient_id") != (patient_id or ""):
                row.error = "patient_id differs from an earlier row with this specimen_id"
                continue
            try:
                row.result = self._result(fields, row)
            except ValueError as exc:
                row.error = str(exc)
        return _Specimen(rows, who, patient_id)

    def _patient(self, fields: list[str]) -> Patient:
        years, days, sex = self._get(fields, "age_years"), self._get(fields, "age_days"), self._get(fields, "sex")
        sex_value = None
        if sex:
            sex_value = sex_of(sex)
            if sex_value is None:
                raise ValueError(f"sex: unknown '{sex[:20]}'")
        return patient(_number(years, "age_years") if years else None, _number(days, "age_days") if days else None,
                       sex_value)

    def _result(self, fields: list[str], row: _Row) -> ResultInput:
        analyte = self._get(fields, "analyte")
        value = _number(self._get(fields, "value"), "value")
        comparator = self._get(fields, "comparator") or None
        if comparator is not None and comparator not in COMPARATORS:
            raise ValueError(f"comparator: must be one of {list(COMPARATORS)}")
        stamp = self._get(fields, "collected_at")
        if stamp:
            try:
                row.collected_at = utc(datetime.fromisoformat(stamp))
            except ValueError:
                raise ValueError("collected_at: not an ISO 8601 date-time") from None
        index = self._get(fields, "hemolysis_index")
        if index:
            row.hemolysis_index = _number(index, "hemolysis_index")
        return ResultInput(analyte, value, self._get(fields, "unit"), comparator=comparator,
                           specimen=self._get(fields, "specimen") or None,
                           hemolysis=self._get(fields, "hemolysis") or None)


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number, not negative")
    return value
