"""Array-speed interpretation of flat result rows (files): the rules of rules.py over whole columns.

A chunk of rows (strings, as read from a file) is grouped into panels (adjacent rows with the
same specimen_id), converted by cached factor, and classified by one `classify_columns` call.
Every other rule is applied once per distinct key and broadcast over the rows: interval and limit
selection per (patient, analyte, specimen); a result's notes per (selection, verdict); corrected
calcium and the panel rules per distinct panel signature. Error messages come from the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from labinterp.core.engine import Engine, Tally
from labinterp.core.errors import FieldError
from labinterp.core.knowledge import FAMILIES, Critical
from labinterp.core.model import COMPARATOR_CODES, SPECIMENS, Panel, Patient, ResultInput, SentInterval
from labinterp.core.numbers import all_plain_characters, read_result
from labinterp.core.outcomes import CLASSIFICATIONS, FLAGS, REASONS, Note, SentRange
from labinterp.core.patients import patient_of_columns
from labinterp.core.rules import (
    Columns,
    Verdicts,
    classify_columns,
    complete_sent_range,
    corrected_applies,
    corrected_calcium,
    corrected_pair,
    derived_notes,
    edges_for,
    limits_analyte,
    panel_rules,
    result_notes,
    select_critical,
    select_interval,
    sent_range_notes,
)

PATIENT_COLUMNS = ("age_years", "age_days", "sex")
RANGE_COLUMNS = ("reference_low", "reference_high", "reference_unit")  # the laboratory's range per row
RANGE_SLOTS = 1 << 22  # distinct sent ranges numbered in a selection key (the caches are emptied well before)
NOTE_SET_BITS = 22  # a row's notes are one id into the table of distinct note lists (emptied well before)
SIGNATURE_ROWS = 8  # panels of up to this many rows share the panel rules' answer by signature (fewer when
# the data has so many analytes that 8 row codes and the length no longer fit in 63 bits)
DERIVED_MARK = "derived"
EMPTY_LINE = "empty line"

MAX_CACHED = 200_000  # entries in the per-file caches before they are emptied
SPELLING_BITS = 20  # a patient column's spelling ids fit in 20 bits (the caches are emptied well before)
SPELLING_MASK = (1 << SPELLING_BITS) - 1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Coded:
    """A column as one code per row into its distinct texts: a file repeats few spellings."""

    codes: IntArray
    texts: list[str]

    @classmethod
    def of(cls, values: Sequence[str]) -> Coded:
        texts = list(dict.fromkeys(values))  # in order of first appearance; the codes looked up at C speed
        code = {text: i for i, text in enumerate(texts)}
        return cls(np.fromiter(map(code.__getitem__, values), np.int64, len(values)), texts)

    def text(self, row: int) -> str:
        return self.texts[int(self.codes[row])]


@dataclass
class Numbers:
    """A value column read: the number, its comparator code (0 none, 1 <, 2 <=, 3 >, 4 >=), and
    whether it cannot be used (not a number, negative, not finite)."""

    value: FloatArray
    comparator: npt.NDArray[np.int8]
    bad: BoolArray

    @classmethod
    def of(cls, texts: Sequence[str]) -> Numbers:
        return cls(*_values(texts))


@dataclass
class RowChunk:
    """Rows of a file, column by column; optional columns may be None.

    `new_panel[r]`: row r's specimen_id differs from row r - 1's (adjacent rows with the same
    specimen_id form a panel). `texts(column, rows)`: those rows' fields as written."""

    new_panel: BoolArray
    specimen_id_empty: BoolArray
    analyte: Coded
    value: Numbers
    unit: Coded
    lines: IntArray
    texts: Callable[[str, list[int]], list[str]]
    age_years: Coded | None = None
    age_days: Coded | None = None
    sex: Coded | None = None
    specimen: Coded | None = None
    reference_low: Coded | None = None
    reference_high: Coded | None = None
    reference_unit: Coded | None = None
    # row index -> problem found while reading (e.g. wrong number of fields); the row is still kept
    row_problems: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of_columns(cls, cols: dict[str, list[str]], lines: Sequence[int],
                   row_problems: dict[int, str] | None = None) -> RowChunk:
        """From columns of strings by name (specimen_id, analyte, value, unit required)."""
        sid = np.array(cols["specimen_id"], dtype=object)
        new_panel = np.ones(len(sid), dtype=bool)
        new_panel[1:] = sid[1:] != sid[:-1]
        optional = {name: Coded.of(cols[name]) for name in (*PATIENT_COLUMNS, "specimen", *RANGE_COLUMNS)
                    if name in cols}
        return cls(new_panel, sid == "", Coded.of(cols["analyte"]), Numbers.of(cols["value"]), Coded.of(cols["unit"]),
                   np.asarray(lines, dtype=np.int64), lambda column, rows: list(map(cols[column].__getitem__, rows)),
                   row_problems=row_problems or {}, **optional)

    def __len__(self) -> int:
        return len(self.new_panel)


@dataclass(frozen=True)
class RowVerdict:
    """What the file path decided for the rows of one distinct verdict key (render/csvrows.py writes it)."""

    canonical_unit: str
    low: float  # the interval as the answer shows it (NaN: none)
    high: float
    classification: str
    flag: str | None
    critical: bool
    grade: int
    notes: tuple[str, ...]  # note codes ("derived" first on a derived row), then pattern:<id> marks
    origin: str
    source: str
    has_interval: bool


@dataclass
class ChunkOutput:
    """Outputs for the chunk's rows (input rows, then derived rows).

    Derived row j (corrected calcium, `derived_values[j]` in `derived_unit`) sits at index n + j and
    is written after input row `derived_after[j]`. Row r's canonical value is `values[value_codes[r]]`
    and its verdict `verdicts[keys[codes[r]]]` (None: refused; a handful of distinct ones per chunk),
    its error `errors.get(r)`.
    """

    values: list[float]
    value_codes: npt.NDArray[np.int64]
    codes: npt.NDArray[np.int64]
    keys: list[int]
    verdicts: dict[int, RowVerdict | None]
    errors: dict[int, str]
    derived_after: IntArray
    derived_values: list[float]
    derived_unit: str
    derived_patient: dict[str, list[str]]  # per patient column: the panel's value for each derived row
    abnormal: int = 0
    critical: int = 0
    reasons: IntArray | None = None  # per output row, its verdict's reason (an index of REASONS)
    selections: IntArray | None = None  # per output row, its selection (-1: none), for selected()
    analytes: IntArray | None = None  # per output row, its analyte (an index of ColumnarInterpreter.analytes)


@dataclass
class _Selections:
    """Interval and critical limits per distinct (patient, analyte, specimen), chosen by the engine."""

    index: dict[int, int] = field(default_factory=dict)  # (patient, analyte, specimen) as one number
    has: list[bool] = field(default_factory=list)
    low: list[float] = field(default_factory=list)  # as the answer shows them
    high: list[float] = field(default_factory=list)
    edge_low: list[float] = field(default_factory=list)  # as the result's unit family compares them
    edge_high: list[float] = field(default_factory=list)
    c_low: list[float] = field(default_factory=list)
    c_low_inc: list[bool] = field(default_factory=list)
    c_high: list[float] = field(default_factory=list)
    c_high_inc: list[bool] = field(default_factory=list)
    analyte_specimen: list[tuple[str, str]] = field(default_factory=list)
    critical: list[Critical | None] = field(default_factory=list)
    interval_reason: list[str | None] = field(default_factory=list)  # why no interval applies (the engine's)
    notes: list[tuple[Note, ...]] = field(default_factory=list)  # the interval's selection gave them
    origin: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    sent: list[bool] = field(default_factory=list)  # classified against the range sent with the row
    rule: list[int] = field(default_factory=list)  # one number per distinct interval (bounds, origin, source)
    rules: dict[tuple[Any, ...], int] = field(default_factory=dict)


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


class ColumnarInterpreter:
    """Interprets chunks of rows against one laboratory profile (or the defaults)."""

    def __init__(self, engine: Engine, lab: str | None = None):
        self.engine = engine
        self.lab = lab
        self.k = k = engine.profile(lab)  # InvalidInput names an unknown profile
        self.analytes = list(k.analytes)
        self.a_index = {a: i for i, a in enumerate(self.analytes)}
        self.s_index = {s: i for i, s in enumerate(SPECIMENS)}
        nan = math.nan
        count = len(self.analytes)
        # Per-analyte tables; one extra sentinel entry at the end, reached by index -1.
        self.canonical_unit = [k.analytes[a].canonical_unit for a in self.analytes] + [""]
        self.implausible = [k.implausible.get(limits_analyte(a)) for a in self.analytes]  # the engine's rule
        self.imp_low = np.full(count + 1, nan)
        self.imp_high = np.full(count + 1, nan)
        # CTCAE edges per analyte and unit family (FAMILIES), as rules.edges_for gives them
        self.g_low = np.full((count + 1, len(FAMILIES), 3), nan)
        self.g_high = np.full((count + 1, len(FAMILIES), 3), nan)
        for i, a in enumerate(self.analytes):
            limits = self.implausible[i]
            if limits is not None:
                self.imp_low[i], self.imp_high[i] = _nan(limits.low), _nan(limits.high)
            for f, family in enumerate(FAMILIES):
                edges = edges_for(None, None, k.ctcae.get((a, "low")), k.ctcae.get((a, "high")), family)
                self.g_low[i, f], self.g_high[i, f] = edges.grade_low, edges.grade_high
        self.CC = self.a_index["corrected_calcium"]
        # a row's code in a panel signature is below 16 x analytes (analyte, classification, reason)
        self._code_bits = (16 * count).bit_length()
        self._signature_rows = min(SIGNATURE_ROWS, 58 // self._code_bits)
        self.SERUM = self.s_index["serum"]
        cc = k.corrected_calcium
        self.cc = cc
        self.ca_factor = k.factors[("calcium", cc.calcium_unit)]
        self.alb_factor = k.factors[("albumin", cc.albumin_unit)]
        self.generation = 0
        self._reset()

    def _reset(self) -> None:
        """Empty the caches (they hold only what was derived from the data, keyed by file text)."""
        self.generation += 1
        # analyte+unit spellings -> combo id; per combo: analyte index, factor, LOINC specimen, ok
        self._combo = _Cache(lambda key: self._combo_id(*key))
        self._combo_analyte: list[int] = []
        self._combo_factor: list[float] = []
        self._combo_lspec: list[int] = []
        self._combo_family: list[int] = []
        self._combo_ok: list[bool] = []
        # patient columns (strings) -> patient id; each column's spellings get stable ids, and a
        # panel's three ids one key, so a chunk maps its distinct patients with one look-up each
        self._spelling_id: list[dict[str, int]] = [{} for _ in PATIENT_COLUMNS]
        self._spelling: list[list[str]] = [[] for _ in PATIENT_COLUMNS]
        self._patient_of_key: dict[int, int] = {}
        self._patients: list[Patient] = []
        self._patient_adult: list[bool] = []  # rules.corrected_applies for each patient
        self._patient_errors: list[list[str]] = []
        self._sel = _Selections()
        # ranges sent per row: (low text, high text, unit text) -> id (0: none sent); per (analyte, id) the
        # range in canonical units, or None when the engine refuses it
        self._ranges: dict[tuple[str, str, str], int] = {("", "", ""): 0}
        self._range_keys: list[tuple[str, str, str]] = [("", "", "")]
        self._range_sent: dict[int, SentRange | None] = {}
        self._note_set: dict[tuple[str, ...], int] = {(): 0}  # distinct note lists (codes) -> id
        self._note_codes: list[tuple[str, ...]] = [()]
        self._row_notes: dict[int, tuple[Note, ...]] = {}  # (selection, derived, verdict) -> notes
        self._panel_findings: dict[tuple[Any, ...], tuple[tuple[int, ...], int, bool]] = {}
        self._fields: dict[int, RowVerdict | None] = {}

    def _cached(self) -> int:
        return (len(self._combo) + len(self._patients) + len(self._sel.has) + len(self._fields) + len(self._ranges)
                + len(self._note_codes) + len(self._row_notes) + len(self._panel_findings)
                + sum(map(len, self._spelling_id)))

    # ----------------------------------------------------------------- caches
    def _combo_id(self, analyte_text: str, unit_text: str) -> int:
        e, k = self.engine, self.k
        errors: list[FieldError] = []
        analyte, _, loinc_specimen = e.resolve_analyte(k, analyte_text)
        factor, ucum = None, None
        if analyte is not None:
            ucum, factor = e.resolve_unit(k, analyte, unit_text, ("unit",), errors)
        cid = len(self._combo_ok)
        self._combo_analyte.append(-1 if analyte is None else self.a_index[analyte])
        self._combo_factor.append(math.nan if factor is None else factor)
        self._combo_lspec.append(-1 if loinc_specimen is None else self.s_index[loinc_specimen])
        self._combo_ok.append(analyte is not None and factor is not None)
        self._combo_family.append(0 if ucum is None else FAMILIES.index(k.unit_family(ucum)))
        return cid

    def _patient_id(self, age_years: str, age_days: str, sex: str) -> int:
        """A new patient (the caller has looked its spellings up in _patient_of_key)."""
        who, problems = patient_of_columns(self.k.words, age_years, age_days, sex)
        pid = len(self._patients)
        self._patients.append(who)
        self._patient_adult.append(corrected_applies(self.cc, who.age_days))
        self._patient_errors.append(problems)
        return pid

    def _spelling_ids(self, column: int, texts: list[str]) -> IntArray:
        """Stable ids of a patient column's spellings (new ones are numbered on)."""
        ids, spellings = self._spelling_id[column], self._spelling[column]
        out = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            found = ids.get(text)
            if found is None:
                found = ids[text] = len(spellings)
                spellings.append(text)
            out[i] = found
        return out

    def _range_ids(self, chunk: RowChunk) -> IntArray:
        """Per row, the id of the range sent with it (0: none), once per distinct spelling."""
        n = len(chunk)
        columns = (chunk.reference_low, chunk.reference_high, chunk.reference_unit)
        if all(c is None for c in columns):
            return np.zeros(n, dtype=np.int64)
        codes = np.stack([np.full(n, -1, dtype=np.int64) if c is None else c.codes.astype(np.int64)
                          for c in (*columns, chunk.unit)], axis=1)
        distinct, inverse = np.unique(codes, axis=0, return_inverse=True)
        ids = []
        for low_code, high_code, unit_code, row_unit in distinct.tolist():
            low, high, unit = (("" if code < 0 or c is None else c.texts[code].strip())
                               for c, code in zip(columns, (low_code, high_code, unit_code), strict=True))
            if not low and not high:
                ids.append(0)
                continue
            # no reference_unit: the bounds are in the result's own unit, as a range sent in JSON
            key = (low, high, unit or "\0" + chunk.unit.texts[row_unit].strip())
            found = self._ranges.get(key)
            if found is None:
                found = self._ranges[key] = len(self._range_keys)
                self._range_keys.append(key)
            ids.append(found)
        return np.array(ids, dtype=np.int64)[inverse.reshape(-1)]

    def _range_text(self, rid: int) -> tuple[str, str, str, bool]:
        """(low, high, unit, whether the unit was named in reference_unit) as written."""
        low, high, unit = self._range_keys[rid]
        return low, high, unit.lstrip("\0"), not unit.startswith("\0")

    def sent_interval(self, rid: int) -> SentInterval:
        low, high, unit, named = self._range_text(rid)
        return SentInterval(_number_or_text(low), _number_or_text(high), unit if named else None,
                            self.k.words["refusal.row_range_title"])

    def _sent(self, analyte: int, rid: int) -> SentRange | None:
        """The range sent with a row, in canonical units, as the engine reads a range sent in JSON (None:
        refused; the row's error says why)."""
        key = analyte * RANGE_SLOTS + rid
        if key not in self._range_sent:
            stated = self.sent_interval(rid)
            unit = stated.unit or self._range_text(rid)[2]
            errors: list[FieldError] = []
            result = ResultInput(self.analytes[analyte], 0.0, unit, reference_interval=stated)
            self._range_sent[key] = self.engine.sent_range(self.k, self.analytes[analyte], result,
                                                           ("reference_interval",), errors)
        return self._range_sent[key]

    def _key(self, pid: IntArray, analyte: IntArray | int, specimen: IntArray, range_id: IntArray,
             family: IntArray | int) -> IntArray:
        """(patient, analyte, specimen, range sent, unit family) as one number, as _selection reads it."""
        key: IntArray = ((((pid * len(self.analytes) + analyte) * len(SPECIMENS) + specimen) * RANGE_SLOTS
                          + range_id) * len(FAMILIES) + family)
        return key

    def _selections(self, key: IntArray) -> IntArray:
        """The selection of each key (computed once per distinct key)."""
        sel = np.full(len(key), -1, dtype=np.int64)
        if len(key):
            unique, inverse = np.unique(key, return_inverse=True)
            known = self._sel.index.get
            ids = [known(u, -1) for u in unique.tolist()]
            for i in [i for i, found in enumerate(ids) if found < 0]:
                ids[i] = self._selection(int(unique[i]))
            sel = np.array(ids, dtype=np.int64)[inverse.reshape(-1)]
        return sel

    def _selection(self, key: int) -> int:
        """A new selection for a key of _key; the caller has looked it up in the index."""
        rest, family = divmod(key, len(FAMILIES))
        rest, rid = divmod(rest, RANGE_SLOTS)
        pid, rest = divmod(rest, len(self.analytes) * len(SPECIMENS))
        analyte, specimen = divmod(rest, len(SPECIMENS))
        k, s = self.k, self._sel
        patient = self._patients[pid]
        name = self.analytes[analyte]
        selection = select_interval(k, name, SPECIMENS[specimen], patient)
        interval = selection.interval
        crit = select_critical(k, name, patient.age_days)
        edges = edges_for(interval, crit, None, None, FAMILIES[family])
        sid = len(s.has)
        sent: SentRange | None = None
        completion: tuple[Note, ...] = ()
        if rid:  # the same precedence and completion as the engine's (rules.complete_sent_range)
            found = self._sent(analyte, rid)
            assert found is not None  # a refused range made the row bad before any selection
            sent, note = complete_sent_range(found, selection)
            completion = () if note is None else (note,)
        s.sent.append(sent is not None)
        if sent is not None:  # the laboratory's own bounds, inclusive, as sent
            s.has.append(True)
            s.low.append(_nan(sent.low))
            s.high.append(_nan(sent.high))
            s.edge_low.append(_nan(sent.low))
            s.edge_high.append(_nan(sent.high))
            s.notes.append(completion + sent_range_notes(patient))
            s.origin.append("result")
            s.source.append(sent.stated.text or "")
        else:
            s.has.append(interval is not None)
            s.low.append(math.nan if interval is None else _nan(interval.low))
            s.high.append(math.nan if interval is None else _nan(interval.high))
            s.edge_low.append(edges.low)
            s.edge_high.append(edges.high)
            s.notes.append(completion + selection.notes)
            s.origin.append("" if interval is None else interval.origin)
            s.source.append("" if interval is None else k.source_title(interval.source))
        s.c_low.append(edges.critical_low)
        s.c_low_inc.append(edges.critical_low_inclusive)
        s.c_high.append(edges.critical_high)
        s.c_high_inc.append(edges.critical_high_inclusive)
        s.analyte_specimen.append((name, SPECIMENS[specimen]))
        s.critical.append(crit)
        s.interval_reason.append(None if sent is not None else selection.reason)
        s.rule.append(s.rules.setdefault((s.has[-1], s.low[-1], s.high[-1], s.origin[-1], s.source[-1]),
                                         len(s.rules) + 1))
        s.index[key] = sid
        return sid

    def selected(self, sel: int) -> tuple[Critical | None, str | None]:
        """A selection's critical limits and why no interval applies (ChunkOutput.selections; -1: none)."""
        if sel < 0:
            return None, None
        return self._sel.critical[sel], self._sel.interval_reason[sel]

    def _notes_id(self, codes: tuple[str, ...]) -> int:
        found = self._note_set.get(codes)
        if found is None:
            found = self._note_set[codes] = len(self._note_codes)
            self._note_codes.append(codes)
        return found

    # ------------------------------------------------------------ interpret
    def interpret(self, chunk: RowChunk) -> ChunkOutput:
        n = len(chunk)
        if self._cached() > MAX_CACHED:  # a file of endless distinct spellings or ages: memory stays bounded
            self._reset()
        if n == 0:
            return ChunkOutput([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), [], {}, {},
                               np.zeros(0, dtype=np.int64), [], self.cc.calcium_unit, {})
        starts = chunk.new_panel.copy()
        starts[0] = True
        panel = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        first_of_row = first[panel]
        n_panels = len(first)

        # patient: each column's first non-empty value in the panel; rows may leave it empty,
        # but a row that gives another value disagrees with its panel
        disagrees = np.zeros(n, dtype=bool)
        panel_codes: list[IntArray] = []  # per patient column, per panel: code of that value, -1 none
        panel_texts: list[list[str]] = []
        patient_key = np.zeros(n_panels, dtype=np.int64)
        for column, name in enumerate(PATIENT_COLUMNS):
            col: Coded | None = getattr(chunk, name)
            texts = [] if col is None else col.texts
            stable = self._spelling_ids(column, [*texts, ""])
            if col is None:
                code = np.full(n_panels, -1, dtype=np.int64)
            else:
                given = np.array([t != "" for t in texts], dtype=bool)[col.codes]
                source = _first_per_panel(given, panel, n_panels)
                code = np.where(source >= 0, col.codes[np.maximum(source, 0)], -1)
                disagrees |= given & (col.codes != code[panel])
            panel_codes.append(code)
            panel_texts.append([*texts, ""])  # code -1 reaches the "" at the end
            patient_key = (patient_key << SPELLING_BITS) | stable[code]
        distinct, inverse = np.unique(patient_key, return_inverse=True)
        known = self._patient_of_key.get
        pids = [known(key, -1) for key in distinct.tolist()]
        for i in [i for i, pid in enumerate(pids) if pid < 0]:
            key = int(distinct[i])
            spelled = []
            for spellings in reversed(self._spelling):
                spelled.append(spellings[key & SPELLING_MASK])
                key >>= SPELLING_BITS
            pids[i] = self._patient_of_key[int(distinct[i])] = self._patient_id(*reversed(spelled))
        panel_pid = np.array(pids, dtype=np.int64)[inverse]
        row_pid = panel_pid[panel]
        patient_bad = np.array([bool(p) for p in self._patient_errors], dtype=bool)[row_pid]

        # analyte and unit: resolved once per distinct spelling pair
        units = len(chunk.unit.texts)
        distinct, inverse = np.unique(chunk.analyte.codes * units + chunk.unit.codes, return_inverse=True)
        cid = np.array([self._combo[(chunk.analyte.texts[a], chunk.unit.texts[u])]
                        for a, u in (divmod(k, units) for k in distinct.tolist())], dtype=np.int64)[inverse]
        combo_ok = np.array(self._combo_ok, dtype=bool)[cid]
        analyte = np.array(self._combo_analyte, dtype=np.int64)[cid]
        family = np.array(self._combo_family, dtype=np.int64)[cid]
        factor = np.array(self._combo_factor)[cid]
        loinc_specimen = np.array(self._combo_lspec, dtype=np.int64)[cid]

        # specimen: the row's, else the LOINC code's, else serum
        if chunk.specimen is not None:
            spec_map: dict[str, int] = {"": -1, **self.s_index}
            row_spec = np.array([spec_map.get(t.strip(), -2) for t in chunk.specimen.texts],
                                dtype=np.int64)[chunk.specimen.codes]
        else:
            row_spec = np.full(n, -1, dtype=np.int64)
        specimen = np.where(row_spec >= 0, row_spec, np.where(loinc_specimen >= 0, loinc_specimen, self.SERUM))
        spec_bad = (row_spec == -2) | ((row_spec >= 0) & (loinc_specimen >= 0) & (row_spec != loinc_specimen))

        input_value, comparator, value_bad = chunk.value.value, chunk.value.comparator, chunk.value.bad

        # the range sent with the row (reference_low, reference_high, reference_unit): read once per
        # distinct (analyte, spelling); one the engine refuses makes the row an error naming it
        range_id = self._range_ids(chunk)
        range_bad = np.zeros(n, dtype=bool)
        checked = combo_ok & (range_id > 0)
        if checked.any():
            unique, inverse = np.unique(analyte[checked] * RANGE_SLOTS + range_id[checked], return_inverse=True)
            refused = [self._sent(*divmod(int(u), RANGE_SLOTS)) is None for u in unique.tolist()]
            range_bad[checked] = np.array(refused, dtype=bool)[inverse.reshape(-1)]

        bad = ~combo_ok | spec_bad | value_bad | patient_bad | disagrees | chunk.specimen_id_empty | range_bad
        for i in chunk.row_problems:
            bad[i] = True
        valid = ~bad
        analyte = np.where(valid, analyte, -1)

        # interval and limits: the rules choose once per distinct (patient, analyte, specimen, range sent,
        # unit family)
        sel = np.full(n, -1, dtype=np.int64)
        sel[valid] = self._selections(self._key(row_pid, analyte, specimen, range_id, family)[valid])
        canonical = np.where(valid, input_value * factor, math.nan)

        # corrected calcium: the pair chosen by rules.corrected_pair, once per panel signature
        pos = np.arange(n) - first_of_row
        lengths = np.diff(np.append(first, n))
        pair_code = np.where(valid, analyte * 2 + (comparator != 0) + 1, 0)
        p_ca, p_alb = self._pairs(pair_code, first, lengths, pos)
        d_panel = np.flatnonzero(p_ca >= 0)
        d_ca, d_alb = first[d_panel] + p_ca[d_panel], first[d_panel] + p_alb[d_panel]
        d_input, d_value = corrected_calcium(self.cc, canonical[d_ca], canonical[d_alb], self.ca_factor,
                                             self.alb_factor)
        nd = len(d_panel)

        # one classify_columns call over the chunk's results and derived rows (calcium's interval and
        # limits, compared in the unit family the calcium was measured in)
        s = self._sel
        all_sel = np.concatenate([sel, sel[d_ca]])
        all_analyte = np.concatenate([analyte, np.full(nd, self.CC, dtype=np.int64)])
        all_family = np.concatenate([family, family[d_ca]])

        def table(values: list[Any], sentinel: Any, dtype: Any = np.float64) -> npt.NDArray[Any]:
            column: npt.NDArray[Any] = np.array([*values, sentinel], dtype=dtype)
            selected: npt.NDArray[Any] = column[all_sel]
            return selected

        has = table(s.has, False, bool)
        columns = Columns(
            value=np.concatenate([canonical, d_value]),
            comparator=np.concatenate([comparator, np.zeros(nd, dtype=np.int8)]).astype(np.int8),
            has_interval=has, low=table(s.edge_low, math.nan), high=table(s.edge_high, math.nan),
            critical_low=table(s.c_low, math.nan), critical_low_inclusive=table(s.c_low_inc, True, bool),
            critical_high=table(s.c_high, math.nan), critical_high_inclusive=table(s.c_high_inc, True, bool),
            implausible_low=self.imp_low[all_analyte], implausible_high=self.imp_high[all_analyte],
            grade_low=self.g_low[all_analyte, all_family], grade_high=self.g_high[all_analyte, all_family],
            sent=table(s.sent, False, bool))
        v = classify_columns(columns)
        cls, reason = v.classification.astype(np.int64), v.reason.astype(np.int64)

        # a result's notes, once per (selection, derived or not, verdict)
        is_derived = np.zeros(n + nd, dtype=np.int64)
        is_derived[n:] = 1
        row_key = (((all_sel + 1) * 2 + is_derived) * 4 + cls) * 4 + reason
        distinct, inverse = np.unique(row_key, return_inverse=True)
        row_notes = [self._result_notes(key) for key in distinct.tolist()]

        # the panel rules, once per panel signature: notes per row, the derived row kept, patterns
        derived_cls = np.full(n_panels, -1, dtype=np.int64)
        derived_cls[d_panel] = cls[n:]
        adult = np.array(self._patient_adult, dtype=np.int64)[panel_pid]
        panel_code = np.where(valid, (analyte * 4 + cls[:n]) * 4 + reason[:n] + 1, 0)
        row_added, derived_added, kept_panel = self._panel_notes(panel_code, first, lengths, pos, p_ca, p_alb,
                                                                 derived_cls, adult)
        kept = kept_panel[d_panel]
        notes = self._combined(row_notes, inverse.reshape(-1), np.concatenate([row_added, derived_added[d_panel]]),
                               is_derived.astype(bool))

        return self._output(chunk, n, valid, bad, canonical, all_analyte, has, columns, v, notes,
                            np.append(first[1:] - 1, n - 1)[d_panel], kept, d_input, row_pid, disagrees,
                            spec_bad, value_bad | range_bad, combo_ok, first_of_row, all_sel,
                            {name: np.array(texts, dtype=object)[code[d_panel[kept]]].tolist()
                             for name, code, texts in zip(PATIENT_COLUMNS, panel_codes, panel_texts, strict=True)})

    def _result_notes(self, key: int) -> tuple[Note, ...]:
        """rules.result_notes after the selection's notes, for one (selection, derived, verdict) key."""
        found = self._row_notes.get(key)
        if found is None:
            rest, reason = divmod(key, 4)
            rest, cls = divmod(rest, 4)
            sel, derived = divmod(rest, 2)
            sel -= 1
            if sel < 0:
                found = ()
            else:
                analyte, specimen = self._sel.analyte_specimen[sel]
                notes = self._sel.notes[sel]
                if derived:
                    analyte, notes = "corrected_calcium", derived_notes(notes)
                found = notes + result_notes(analyte, specimen, None, CLASSIFICATIONS[cls], REASONS[reason],
                                             self._sel.critical[sel], self._sel.sent[sel])
            self._row_notes[key] = found
        return found

    def _signatures(self, code: IntArray, first: IntArray, lengths: IntArray, pos: IntArray,
                    extra: IntArray) -> tuple[IntArray, list[int]]:
        """Panels grouped by signature (the row codes in order, their count, and `extra`): the group of
        each panel and one panel of each group. A panel longer than SIGNATURE_ROWS is a group of its own."""
        rows, bits = self._signature_rows, self._code_bits
        short = lengths <= rows
        shifted = np.where(pos < rows, code << (bits * np.minimum(pos, rows)), 0)
        packed = np.add.reduceat(shifted, first) if len(first) else shifted[:0]
        packed = np.where(short, packed * (rows + 1) + lengths, -1 - np.arange(len(first)))
        keys = np.stack([packed, extra], axis=1)
        _, representative, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return group.reshape(-1), representative.tolist()

    def _pairs(self, code: IntArray, first: IntArray, lengths: IntArray, pos: IntArray) -> tuple[IntArray, IntArray]:
        """Per panel, the positions of the calcium and albumin of rules.corrected_pair (-1: none)."""
        group, representative = self._signatures(code, first, lengths, pos, np.zeros(len(first), dtype=np.int64))
        found = np.full((len(representative), 2), -1, dtype=np.int64)
        for g, p in enumerate(representative):
            codes = code[first[p]:first[p] + lengths[p]].tolist()
            pair = corrected_pair([(None, False) if c == 0 else (self.analytes[(c - 1) // 2], bool((c - 1) % 2))
                                   for c in codes])
            if pair is not None:
                found[g] = pair
        return found[group, 0], found[group, 1]

    def _panel_notes(self, code: IntArray, first: IntArray, lengths: IntArray, pos: IntArray, p_ca: IntArray,
                     p_alb: IntArray, derived_cls: IntArray, adult: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
        """rules.panel_rules once per panel signature: per row and per panel's derived row the id of the
        notes the panel adds (patterns last), and per panel whether the derived row is kept."""
        n_panels = len(first)
        positions = (p_ca + 1) * (SIGNATURE_ROWS + 2) + (p_alb + 1)
        extra = ((derived_cls + 1) * (SIGNATURE_ROWS + 2) ** 2 + positions) * 2 + adult
        group, representative = self._signatures(code, first, lengths, pos, extra)
        offsets = np.zeros(len(representative) + 1, dtype=np.int64)
        added: list[int] = []
        derived_added = np.zeros(len(representative), dtype=np.int64)
        kept_group = np.zeros(len(representative), dtype=bool)
        for g, p in enumerate(representative):
            codes = tuple(code[first[p]:first[p] + lengths[p]].tolist())
            pair = None if p_ca[p] < 0 else (int(p_ca[p]), int(p_alb[p]))
            d_cls = None if derived_cls[p] < 0 else CLASSIFICATIONS[derived_cls[p]]
            is_adult = bool(adult[p])
            found = self._panel_findings.get((codes, pair, d_cls, is_adult))
            if found is None:
                rows = [(None, "indeterminate", None) if c == 0 else
                        (self.analytes[(c - 1) // 16], CLASSIFICATIONS[(c - 1) // 4 % 4], REASONS[(c - 1) % 4])
                        for c in codes]
                findings = panel_rules(self.k.patterns, rows, pair, d_cls, self.cc, is_adult)
                marks = [[note.code for note in row] for row in findings.row_notes]
                derived_marks = [note.code for note in findings.derived_notes]
                for pattern, members in findings.patterns:
                    for m in members:
                        (derived_marks if m < 0 else marks[m]).append(f"pattern:{pattern.id}")
                found = self._panel_findings[(codes, pair, d_cls, is_adult)] = (
                    tuple(self._notes_id(tuple(m)) for m in marks), self._notes_id(tuple(derived_marks)),
                    findings.kept)
            per_row, derived_added[g], kept_group[g] = found
            added.extend(per_row)
            offsets[g + 1] = offsets[g] + len(per_row)
        panel_of_row = np.repeat(np.arange(n_panels), lengths)
        row_added = np.array(added, dtype=np.int64)[offsets[group[panel_of_row]] + pos]
        return row_added, derived_added[group], kept_group[group]

    def _combined(self, own: list[tuple[Note, ...]], inverse: IntArray, added: IntArray,
                  derived: BoolArray) -> IntArray:
        """Per row, the id of its whole note list: its own notes, then what the panel adds; once per
        distinct combination."""
        own_id = np.array([self._notes_id(tuple(note.code for note in notes)) for notes in own],
                          dtype=np.int64)[inverse]
        key = ((own_id << NOTE_SET_BITS) | added) * 2 + derived
        distinct, back = np.unique(key, return_inverse=True)
        ids = []
        for k in distinct.tolist():
            rest, is_derived = divmod(k, 2)
            codes = self._note_codes[rest >> NOTE_SET_BITS] + self._note_codes[rest & ((1 << NOTE_SET_BITS) - 1)]
            ids.append(self._notes_id((DERIVED_MARK, *codes) if is_derived else codes))
        combined: IntArray = np.array(ids, dtype=np.int64)[back.reshape(-1)]
        return combined

    def _output(self, chunk: RowChunk, n: int, valid: BoolArray, bad: BoolArray, canonical: FloatArray,
                all_analyte: IntArray, has: BoolArray, columns: Columns, v: Verdicts, notes: IntArray,
                d_after: IntArray, kept: BoolArray, d_input: FloatArray, row_pid: IntArray,
                disagrees: BoolArray, spec_bad: BoolArray, value_bad: BoolArray, combo_ok: BoolArray,
                first_of_row: IntArray, all_sel: IntArray, derived_patient: dict[str, list[str]]) -> ChunkOutput:
        """Strings for the output, formatted once per distinct value and per distinct verdict."""
        cls = v.classification.astype(np.int64)
        rule = np.array([*self._sel.rule, 0], dtype=np.int64)[all_sel]  # same interval, same strings
        key = (((((rule + 1) * (len(self.analytes) + 1) + (all_analyte + 1)) * 4 + cls) * 6
                + v.flag.astype(np.int64)) * 2 + v.critical.astype(np.int64)) * 6 + v.grade.astype(np.int64)
        key = (key << NOTE_SET_BITS) | notes  # the note list says "derived" for a derived row
        keep = np.concatenate([valid, kept])
        key[~keep] = -1
        keys, first, codes = np.unique(key, return_index=True, return_inverse=True)
        key_list = keys.tolist()
        fields: dict[int, RowVerdict | None] = {}
        for k, r in zip(key_list, first.tolist(), strict=True):
            fields[k] = self._fields_for(k, r, all_sel, all_analyte, v, notes)
        value = np.where(keep, columns.value, math.nan)
        unique_values, value_codes = np.unique(value, return_inverse=True)
        values = unique_values.tolist()
        errors = {}
        for i in np.flatnonzero(bad).tolist():
            errors[i] = self._row_error(chunk, i, int(row_pid[i]), bool(disagrees[i]), bool(spec_bad[i]),
                                        bool(value_bad[i]), bool(combo_ok[i]), int(first_of_row[i]))
        kept_index = np.flatnonzero(kept)
        derived_values = d_input[kept_index].tolist()
        select = np.concatenate([np.arange(n), n + kept_index])  # dropped derived rows are not written
        value_codes, codes = value_codes[select], codes[select]
        abnormal = int((keep & ((cls == 1) | (cls == 3))).sum())
        critical = int((keep & v.critical).sum())
        flags = len(FLAGS)
        combined = (all_analyte[keep] * flags + v.flag[keep]) * 2 + v.critical[keep]
        counts = np.bincount(combined, minlength=len(self.analytes) * flags * 2)
        if self.engine.observe is not None:
            self.engine.observe(Tally({(self.analytes[c // (2 * flags)], FLAGS[c // 2 % flags], bool(c % 2)):
                                       int(counts[c]) for c in np.flatnonzero(counts).tolist()}))
        return ChunkOutput(values, value_codes.astype(np.int64), codes.astype(np.int64), key_list, fields,
                           errors, d_after[kept_index], derived_values, self.cc.calcium_unit, derived_patient,
                           abnormal, critical, v.reason.astype(np.int64)[select], all_sel[select],
                           all_analyte[select])

    def _fields_for(self, key: int, r: int, all_sel: IntArray, all_analyte: IntArray, v: Verdicts,
                    notes: IntArray) -> RowVerdict | None:
        if key in self._fields:
            return self._fields[key]
        out = None
        if key >= 0:
            sel = int(all_sel[r])
            s = self._sel
            has = sel >= 0 and s.has[sel]
            out = RowVerdict(
                self.canonical_unit[int(all_analyte[r])],
                s.low[sel] if has else math.nan, s.high[sel] if has else math.nan,
                CLASSIFICATIONS[int(v.classification[r])], FLAGS[int(v.flag[r])], bool(v.critical[r]),
                int(v.grade[r]), self._note_codes[int(notes[r])],
                s.origin[sel] if has else "", s.source[sel] if has else "", has)
        self._fields[key] = out
        return out

    def _row_error(self, chunk: RowChunk, i: int, pid: int, disagrees: bool, spec_bad: bool,
                   value_bad: bool, combo_ok: bool, first_row: int) -> str:
        """A bad row's error: the engine's own reasons, with the file's line number (the data's words)."""
        words = self.k.words
        reasons: list[str] = []
        if i in chunk.row_problems:
            reasons.append(chunk.row_problems[i])
            if chunk.row_problems[i] == EMPTY_LINE:
                return words["refusal.row_line"].format(line=chunk.lines[i], reasons=EMPTY_LINE)
        if chunk.specimen_id_empty[i]:
            reasons.append(words["refusal.row_no_specimen_id"])
        reasons.extend(self._patient_errors[pid])
        if disagrees:
            reasons.append(words["refusal.row_patient_differs"].format(line=chunk.lines[first_row]))
        if value_bad or spec_bad or not combo_ok:
            raw = chunk.texts("value", [i])[0].strip()
            number: Any = raw
            cmp = None
            read = read_result(raw)
            if read is not None:
                number, cmp = read
            specimen = (chunk.specimen.text(i).strip() or None) if chunk.specimen is not None else None
            rid = int(self._range_ids(chunk)[i]) if any(
                c is not None for c in (chunk.reference_low, chunk.reference_high, chunk.reference_unit)) else 0
            result = ResultInput(chunk.analyte.text(i), number, chunk.unit.text(i), comparator=cmp, specimen=specimen,
                                 reference_interval=self.sent_interval(rid) if rid else None)
            patient = self._patients[pid] if not self._patient_errors[pid] else Patient()
            reasons.extend(words["refusal.row_field"].format(
                field="/".join(str(p) for p in e.path[2:]) or "/".join(map(str, e.path)), reason=e.reason)
                for e in self.engine.refusal(Panel((result,), patient, None, self.lab)))
        return words["refusal.row_line"].format(
            line=chunk.lines[i], reasons="; ".join(reasons or [words["refusal.row_not_interpreted"]]))


class _Cache(dict):  # type: ignore[type-arg]
    """A dict that computes a missing entry once, so lookups can run through map() at C speed."""

    def __init__(self, compute: Any):
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self.compute(key)
        return value


def _values(texts: Sequence[str]) -> tuple[FloatArray, npt.NDArray[np.int8], BoolArray]:
    """Parse value strings: the plain numbers at C speed, off-scale and bad ones one by one."""
    n = len(texts)
    comparator = np.zeros(n, dtype=np.int8)
    bad = np.zeros(n, dtype=bool)
    try:
        if not all_plain_characters(texts):  # float() alone reads '1_0', '1e3', 'inf' and other scripts' digits
            raise ValueError
        values = np.fromiter(map(float, texts), np.float64, n)
    except ValueError:
        values = np.empty(n, dtype=np.float64)
        for i, text in enumerate(texts):
            read = read_result(text)
            if read is None:
                values[i] = math.nan
                bad[i] = True
            else:
                values[i] = read[0]
                if read[1] is not None:
                    comparator[i] = COMPARATOR_CODES[read[1]]
    with np.errstate(invalid="ignore"):
        bad |= ~np.isfinite(values) | (values < 0)
    return values, comparator, bad


def _first_per_panel(mask: BoolArray, panel: IntArray, n_panels: int) -> IntArray:
    """Per panel, the index of the first row where mask holds, or -1 (rows are in panel order)."""
    out = np.full(n_panels, -1, dtype=np.int64)
    rows = np.flatnonzero(mask)
    if len(rows):
        panels = panel[rows]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = panels[1:] != panels[:-1]
        out[panels[first]] = rows[first]
    return out


def _number_or_text(text: str) -> Any:
    """A bound as written: empty is no bound; a number; anything else is kept for the engine to refuse."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text
