"""Array-speed interpretation of flat result rows (files): the engine's rules over whole columns.

A chunk of rows (strings, as read from a file) is grouped into panels (adjacent rows with the
same specimen_id), converted by cached factor, and classified by one `classify_columns` call.
Interval and limit selection, error messages and warnings come from the engine's own methods,
called once per distinct (patient, analyte, specimen) or per bad row, never once per value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from labinterp.core.engine import CLASSIFICATIONS, FLAGS, Columns, Engine, Verdicts, classify_columns
from labinterp.core.errors import FieldError, InvalidInput
from labinterp.core.model import SEXES, SPECIMENS, Panel, Patient, ResultInput
from labinterp.core.numbers import all_plain_characters, read_number, read_result

OUTPUT_COLUMNS = ("canonical_value", "canonical_unit", "interval_low", "interval_high", "classification",
                  "flag", "critical", "ctcae_grade", "warnings", "error", "interval_origin", "interval_source")
BEFORE_ERROR = OUTPUT_COLUMNS.index("error") - 1  # verdict fields between canonical_value and error
PATIENT_COLUMNS = ("age_years", "age_days", "sex")
DAYS_PER_YEAR = 365.25
MAX_AGE_YEARS = 150.0
# Sex as the JSON API spells it, plus HL7 v2 administrative sex letters (case-insensitive).
SEX_SPELLINGS = {**{s: s for s in SEXES}, "f": "female", "m": "male", "o": "other", "u": "unknown"}
# Warning codes in the order the engine emits them for one result: a row's warnings are a
# bitmask over this tuple (no_critical_limit appears twice: low side, high side).
WARNING_BITS = ("age_in_years_infant", "adult_interval_assumed", "implausible", "no_interval", "off_scale",
                "no_critical_limit", "no_critical_limit", "serum_potassium_high", "no_corrected_calcium",
                "low_albumin", "ctcae_graded_on_corrected", "ctcae_needs_albumin",
                "corrected_calcium_limitations")
BIT = {name: 1 << i for i, name in enumerate(WARNING_BITS) if name != "no_critical_limit"}
BIT_NO_CRITICAL_LOW, BIT_NO_CRITICAL_HIGH = 1 << 5, 1 << 6
PATTERN_BIT0 = len(WARNING_BITS)
WARNING_SEPARATOR = "|"
DERIVED_MARK = "derived"
EMPTY_LINE = "empty line"
_COMPARATOR_VALUE = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*$")
_CMP_CODE = {"<": 1, "<=": 2, ">": 3, ">=": 4}

MAX_CACHED = 200_000  # entries in the per-file caches before they are emptied
MAX_TEXTS = 50_000  # shortest texts of values kept for reuse
UNCACHED_CHUNKS = 16  # chunks that skip the text cache after one whose values were mostly new
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
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))
        return cls(codes, list(index))

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
    # row index -> problem found while reading (e.g. wrong number of fields); the row is still kept
    row_problems: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of_columns(cls, cols: dict[str, list[str]], lines: Sequence[int],
                   row_problems: dict[int, str] | None = None) -> RowChunk:
        """From columns of strings by name (specimen_id, analyte, value, unit required)."""
        sid = np.array(cols["specimen_id"], dtype=object)
        new_panel = np.ones(len(sid), dtype=bool)
        new_panel[1:] = sid[1:] != sid[:-1]
        optional = {name: Coded.of(cols[name]) for name in (*PATIENT_COLUMNS, "specimen") if name in cols}
        return cls(new_panel, sid == "", Coded.of(cols["analyte"]), Numbers.of(cols["value"]), Coded.of(cols["unit"]),
                   np.asarray(lines, dtype=np.int64), lambda column, rows: list(map(cols[column].__getitem__, rows)),
                   row_problems=row_problems or {}, **optional)

    def __len__(self) -> int:
        return len(self.new_panel)


@dataclass
class ChunkOutput:
    """Outputs for the chunk's rows (input rows, then derived rows).

    Derived row j (corrected calcium, `derived_value[j]` in `derived_unit`) sits at index n + j and
    is written after input row `derived_after[j]`. Row r's appended columns are
    `value_texts[value_codes[r]]` (canonical_value), then `fields[keys[codes[r]]]` (canonical_unit
    ... warnings, interval_origin, interval_source: a handful of distinct tuples per chunk) with
    `errors.get(r, "")` in its place before interval_origin (see `row`).
    """

    value_texts: list[str]
    value_codes: npt.NDArray[np.int64]
    codes: npt.NDArray[np.int64]
    keys: list[int]
    fields: dict[int, tuple[str, ...]]
    errors: dict[int, str]
    derived_after: IntArray
    derived_value: list[str]
    derived_unit: str
    derived_patient: dict[str, list[str]]  # per patient column: the panel's value for each derived row
    abnormal: int = 0
    critical: int = 0

    def row(self, r: int) -> list[str]:
        """The appended columns of row r, in OUTPUT_COLUMNS order."""
        fields = self.fields[self.keys[self.codes[r]]]
        return [self.value_texts[self.value_codes[r]], *fields[:BEFORE_ERROR], self.errors.get(r, ""),
                *fields[BEFORE_ERROR:]]


@dataclass
class _Selections:
    """Interval and critical limits per distinct (patient, analyte, specimen), chosen by the engine."""

    index: dict[int, int] = field(default_factory=dict)  # (patient, analyte, specimen) as one number
    has: list[bool] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    c_low: list[float] = field(default_factory=list)
    c_low_inc: list[bool] = field(default_factory=list)
    c_high: list[float] = field(default_factory=list)
    c_high_inc: list[bool] = field(default_factory=list)
    c_low_missing: list[bool] = field(default_factory=list)
    c_high_missing: list[bool] = field(default_factory=list)
    bits: list[int] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    rule: list[int] = field(default_factory=list)  # one number per distinct interval (bounds, origin, source)
    rules: dict[tuple[Any, ...], int] = field(default_factory=dict)


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _fmt(x: float) -> str:
    return "" if x != x else repr(x)


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
        self.imp_low = np.full(count + 1, nan)
        self.imp_high = np.full(count + 1, nan)
        self.g_low = np.full((count + 1, 3), nan)
        self.g_high = np.full((count + 1, 3), nan)
        for i, a in enumerate(self.analytes):
            limits = k.implausible.get("calcium" if a == "corrected_calcium" else a)
            if limits is not None:
                self.imp_low[i], self.imp_high[i] = _nan(limits.low), _nan(limits.high)
            for direction, table in (("low", self.g_low), ("high", self.g_high)):
                term = k.ctcae.get((a, direction))
                if term is not None:
                    table[i] = term.edges
        self.CA, self.ALB = self.a_index["calcium"], self.a_index["albumin"]
        self.K, self.CC = self.a_index["potassium"], self.a_index["corrected_calcium"]
        self.SERUM = self.s_index["serum"]
        cc = k.corrected_calcium
        self.cc = cc
        self.ca_factor = k.factors[("calcium", cc.calcium_unit)]
        self.alb_factor = k.factors[("albumin", cc.albumin_unit)]
        self.patterns = k.patterns
        self._shift = PATTERN_BIT0 + len(k.patterns) + 1
        self._pattern_analytes = sorted({a for p in k.patterns for r in p.requires for a in r.any_of})
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
        self._combo_ok: list[bool] = []
        # patient columns (strings) -> patient id; each column's spellings get stable ids, and a
        # panel's three ids one key, so a chunk maps its distinct patients with one look-up each
        self._spelling_id: list[dict[str, int]] = [{} for _ in PATIENT_COLUMNS]
        self._spelling: list[list[str]] = [[] for _ in PATIENT_COLUMNS]
        self._patient_of_key: dict[int, int] = {}
        self._patients: list[Patient] = []
        self._patient_errors: list[list[str]] = []
        self._sel = _Selections()
        self._warning_text: dict[tuple[int, bool], str] = {}
        self._fields: dict[int, tuple[str, ...]] = {}
        self._text_of = _TextOf()  # float -> shortest round-trip text (values repeat across chunks)
        self._uncached_chunks = 0  # chunks still to go without the cache (their values did not repeat)

    def _cached(self) -> int:
        return (len(self._combo) + len(self._patients) + len(self._sel.has) + len(self._fields)
                + sum(map(len, self._spelling_id)))

    # ----------------------------------------------------------------- caches
    def _combo_id(self, analyte_text: str, unit_text: str) -> int:
        e, k = self.engine, self.k
        errors: list[FieldError] = []
        analyte, _, loinc_specimen = e._resolve_analyte(k, analyte_text)
        factor = None
        if analyte is not None:
            _, factor = e._resolve_unit(k, analyte, unit_text, ("unit",), errors)
        cid = len(self._combo_ok)
        self._combo_analyte.append(-1 if analyte is None else self.a_index[analyte])
        self._combo_factor.append(math.nan if factor is None else factor)
        self._combo_lspec.append(-1 if loinc_specimen is None else self.s_index[loinc_specimen])
        self._combo_ok.append(analyte is not None and factor is not None)
        return cid

    def _patient_id(self, age_years: str, age_days: str, sex: str) -> int:
        """A new patient (the caller has looked its spellings up in _patient_of_key)."""
        problems: list[str] = []
        years = _age(age_years, "age_years", MAX_AGE_YEARS, problems)
        days = _age(age_days, "age_days", MAX_AGE_YEARS * DAYS_PER_YEAR, problems)
        if years is not None and days is not None:
            problems.append("give age_years or age_days, not both")
        sex_code = None
        if sex.strip():
            sex_code = SEX_SPELLINGS.get(sex.strip().lower())
            if sex_code is None:
                problems.append(f"sex: must be one of {list(SEXES)} (or F, M, O, U)")
        if days is not None:
            patient = Patient(age_days=days, sex=sex_code)
        elif years is not None:
            patient = Patient(age_days=years * DAYS_PER_YEAR, age_given_in_years=True, sex=sex_code)
        else:
            patient = Patient(sex=sex_code)
        pid = len(self._patients)
        self._patients.append(patient)
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

    def _selection(self, key: int) -> int:
        """A new selection for key = (patient * analytes + analyte) * specimens + specimen, as
        interpret() numbers (patient, analyte, specimen); the caller has looked it up in the index."""
        pid, rest = divmod(key, len(self.analytes) * len(SPECIMENS))
        analyte, specimen = divmod(rest, len(SPECIMENS))
        e, k, s = self.engine, self.k, self._sel
        patient = self._patients[pid]
        warnings: list[dict[str, Any]] = []
        name = self.analytes[analyte]
        interval, _, _ = e._select_interval(k, name, SPECIMENS[specimen], patient, warnings)
        crit = e._select_critical(k, name, patient.age_days)
        sid = len(s.has)
        s.has.append(interval is not None)
        s.low.append(math.nan if interval is None else _nan(interval.low))
        s.high.append(math.nan if interval is None else _nan(interval.high))
        s.c_low.append(math.nan if crit is None else _nan(crit.low))
        s.c_low_inc.append(True if crit is None else crit.low_inclusive)
        s.c_high.append(math.nan if crit is None else _nan(crit.high))
        s.c_high_inc.append(True if crit is None else crit.high_inclusive)
        s.c_low_missing.append(crit is not None and crit.low is None)
        s.c_high_missing.append(crit is not None and crit.high is None)
        s.bits.append(sum(BIT[w["code"]] for w in warnings))
        s.origin.append("" if interval is None else interval.origin)
        s.source.append("" if interval is None else k.source_title(interval.source))
        s.rule.append(s.rules.setdefault((s.has[-1], s.low[-1], s.high[-1], s.origin[-1], s.source[-1]),
                                         len(s.rules) + 1))
        s.index[key] = sid
        return sid

    def _warnings(self, mask: int, derived: bool) -> str:
        key = (mask, derived)
        text = self._warning_text.get(key)
        if text is None:
            codes = [DERIVED_MARK] if derived else []
            codes += [WARNING_BITS[i] for i in range(len(WARNING_BITS)) if mask >> i & 1]
            codes += [f"pattern:{p.id}" for j, p in enumerate(self.patterns) if mask >> (PATTERN_BIT0 + j) & 1]
            text = self._warning_text[key] = WARNING_SEPARATOR.join(codes)
        return text

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

        bad = ~combo_ok | spec_bad | value_bad | patient_bad | disagrees | chunk.specimen_id_empty
        for i in chunk.row_problems:
            bad[i] = True
        valid = ~bad
        analyte = np.where(valid, analyte, -1)

        # interval and limits: the engine chooses once per distinct (patient, analyte, specimen)
        n_analytes, n_specimens = len(self.analytes), len(SPECIMENS)
        key = (row_pid * n_analytes + analyte) * n_specimens + specimen
        sel = np.full(n, -1, dtype=np.int64)
        if valid.any():
            unique, inverse = np.unique(key[valid], return_inverse=True)
            known = self._sel.index.get
            ids = [known(u, -1) for u in unique.tolist()]
            for i in [i for i, found in enumerate(ids) if found < 0]:
                ids[i] = self._selection(int(unique[i]))
            sel[valid] = np.array(ids, dtype=np.int64)[inverse]
        canonical = np.where(valid, input_value * factor, math.nan)

        # corrected calcium: first calcium and first albumin of each panel, neither off scale
        p_ca = _first_per_panel(valid & (analyte == self.CA), panel, n_panels)
        p_alb = _first_per_panel(valid & (analyte == self.ALB), panel, n_panels)
        pair = (p_ca >= 0) & (p_alb >= 0)
        pair[pair] &= (comparator[p_ca[pair]] == 0) & (comparator[p_alb[pair]] == 0)
        d_panel = np.flatnonzero(pair)
        d_ca, d_alb = p_ca[d_panel], p_alb[d_panel]
        cc = self.cc
        d_input = canonical[d_ca] / self.ca_factor + cc.slope * (cc.reference_albumin
                                                                  - canonical[d_alb] / self.alb_factor)
        d_value = d_input * self.ca_factor
        nd = len(d_panel)

        # one classify_columns call over the chunk's results and derived rows
        s = self._sel
        all_sel = np.concatenate([sel, sel[d_ca]])
        all_analyte = np.concatenate([analyte, np.full(nd, self.CC, dtype=np.int64)])

        def table(values: list[Any], sentinel: Any, dtype: Any = np.float64) -> npt.NDArray[Any]:
            return np.array([*values, sentinel], dtype=dtype)[all_sel]

        has = table(s.has, False, bool)
        columns = Columns(
            value=np.concatenate([canonical, d_value]),
            comparator=np.concatenate([comparator, np.zeros(nd, dtype=np.int8)]).astype(np.int8),
            has_interval=has, low=table(s.low, math.nan), high=table(s.high, math.nan),
            critical_low=table(s.c_low, math.nan), critical_low_inclusive=table(s.c_low_inc, True, bool),
            critical_high=table(s.c_high, math.nan), critical_high_inclusive=table(s.c_high_inc, True, bool),
            implausible_low=self.imp_low[all_analyte], implausible_high=self.imp_high[all_analyte],
            grade_low=self.g_low[all_analyte], grade_high=self.g_high[all_analyte])
        v = classify_columns(columns)
        cls, reason = v.classification.astype(np.int64), v.reason.astype(np.int64)

        # warnings, as the engine gives them, as one bitmask per row
        sel_bits = table(s.bits, 0, np.int64)
        row_bits = sel_bits[:n]
        bits = np.concatenate([row_bits, sel_bits[n:] & BIT["adult_interval_assumed"]])
        bits |= np.where(reason == 1, BIT["implausible"], 0)
        bits |= np.where(reason == 2, BIT["no_interval"], 0)
        bits |= np.where(reason == 3, BIT["off_scale"], 0)
        not_implausible = reason != 1
        bits |= np.where(not_implausible & table(s.c_low_missing, False, bool) & (cls == 1), BIT_NO_CRITICAL_LOW, 0)
        bits |= np.where(not_implausible & table(s.c_high_missing, False, bool) & (cls == 3),
                         BIT_NO_CRITICAL_HIGH, 0)
        all_specimen = np.concatenate([specimen, specimen[d_ca]])
        bits |= np.where((all_analyte == self.K) & (cls == 3) & (all_specimen == self.SERUM),
                         BIT["serum_potassium_high"], 0)
        # a derived value from an implausible input is dropped, and the calcium row says so
        dropped = (reason[d_ca] == 1) | (reason[d_alb] == 1)
        bits[d_ca[dropped]] |= BIT["no_corrected_calcium"]
        kept = ~dropped
        bits[n + np.flatnonzero(kept)] |= BIT["corrected_calcium_limitations"]
        panel_has_derived = np.zeros(n_panels, dtype=bool)
        panel_has_derived[d_panel[kept]] = True
        albumin_low = np.zeros(n_panels, dtype=bool)
        albumin_low[panel[valid & (analyte == self.ALB) & (cls[:n] == 1)]] = True
        is_calcium = valid & (analyte == self.CA)
        bits[:n] |= np.where(is_calcium & albumin_low[panel], BIT["low_albumin"], 0)
        graded_calcium = is_calcium & ((cls[:n] == 1) | (cls[:n] == 3))
        bits[:n] |= np.where(graded_calcium & panel_has_derived[panel], BIT["ctcae_graded_on_corrected"], 0)
        bits[:n] |= np.where(graded_calcium & ~panel_has_derived[panel], BIT["ctcae_needs_albumin"], 0)
        self._pattern_bits(bits, valid, analyte, panel, n_panels, cls, d_panel[kept], n + np.flatnonzero(kept))

        return self._output(chunk, n, valid, bad, canonical, all_analyte, has, columns, v, bits,
                            np.append(first[1:] - 1, n - 1)[d_panel], kept, d_input, row_pid, disagrees,
                            spec_bad, value_bad, combo_ok, first_of_row, all_sel,
                            {name: np.array(texts, dtype=object)[code[d_panel[kept]]].tolist()
                             for name, code, texts in zip(PATIENT_COLUMNS, panel_codes, panel_texts, strict=True)})

    def _pattern_bits(self, bits: IntArray, valid: BoolArray, analyte: IntArray, panel: IntArray,
                      n_panels: int, cls: IntArray, derived_panels: IntArray, derived_rows: IntArray) -> None:
        """Combined patterns: per panel, the first definite result of each analyte is the one checked."""
        n = len(valid)
        first: dict[str, IntArray] = {}
        for name in self._pattern_analytes:
            a = self.a_index[name]
            if a == self.CC:
                rows = np.full(n_panels, -1, dtype=np.int64)
                definite = cls[derived_rows] != 0
                rows[derived_panels[definite]] = derived_rows[definite]
                first[name] = rows
            else:
                first[name] = _first_per_panel(valid & (analyte == a) & (cls[:n] != 0), panel, n_panels)
        for j, pattern in enumerate(self.patterns):
            matched = np.ones(n_panels, dtype=bool)
            chosen_rows = []
            for req in pattern.requires:
                chosen = np.full(n_panels, -1, dtype=np.int64)
                for name in req.any_of:
                    chosen = np.where(chosen >= 0, chosen, first[name])
                want = {"hypo": 1, "normal": 2, "hyper": 3}[req.classification]
                matched &= (chosen >= 0) & (cls[np.maximum(chosen, 0)] == want)
                chosen_rows.append(chosen)
            for chosen in chosen_rows:
                bits[chosen[matched]] |= 1 << (PATTERN_BIT0 + j)

    def _output(self, chunk: RowChunk, n: int, valid: BoolArray, bad: BoolArray, canonical: FloatArray,
                all_analyte: IntArray, has: BoolArray, columns: Columns, v: Verdicts, bits: IntArray,
                d_after: IntArray, kept: BoolArray, d_input: FloatArray, row_pid: IntArray,
                disagrees: BoolArray, spec_bad: BoolArray, value_bad: BoolArray, combo_ok: BoolArray,
                first_of_row: IntArray, all_sel: IntArray, derived_patient: dict[str, list[str]]) -> ChunkOutput:
        """Strings for the output, formatted once per distinct value and per distinct verdict."""
        m = len(columns.value)
        cls = v.classification.astype(np.int64)
        derived = np.zeros(m, dtype=np.int64)
        derived[n:] = 1
        rule = np.array([*self._sel.rule, 0], dtype=np.int64)[all_sel]  # same interval, same strings
        key = (((((rule + 1) * (len(self.analytes) + 1) + (all_analyte + 1)) * 4 + cls) * 6
                + v.flag.astype(np.int64)) * 2 + v.critical.astype(np.int64)) * 6 + v.grade.astype(np.int64)
        key = (key << self._shift) | (bits << 1) | derived
        keep = np.concatenate([valid, kept])
        key[~keep] = -1
        keys, first, codes = np.unique(key, return_index=True, return_inverse=True)
        key_list = keys.tolist()
        fields: dict[int, tuple[str, ...]] = {}
        for k, r in zip(key_list, first.tolist(), strict=True):
            fields[k] = self._fields_for(k, r, all_sel, all_analyte, v, bits, n)
        value = np.where(keep, columns.value, math.nan)
        unique_values, value_codes = np.unique(value, return_inverse=True)
        value_texts = self._texts(unique_values.tolist())
        errors = {}
        for i in np.flatnonzero(bad).tolist():
            errors[i] = self._row_error(chunk, i, int(row_pid[i]), bool(disagrees[i]), bool(spec_bad[i]),
                                        bool(value_bad[i]), bool(combo_ok[i]), int(first_of_row[i]))
        kept_index = np.flatnonzero(kept)
        derived_value = self._texts(d_input[kept_index].tolist())
        select = np.concatenate([np.arange(n), n + kept_index])  # dropped derived rows are not written
        value_codes, codes = value_codes[select], codes[select]
        abnormal = int((keep & ((cls == 1) | (cls == 3))).sum())
        critical = int((keep & v.critical).sum())
        flags = len(FLAGS)
        combined = (all_analyte[keep] * flags + v.flag[keep]) * 2 + v.critical[keep]
        counts = np.bincount(combined, minlength=len(self.analytes) * flags * 2)
        self.engine.counted({(self.analytes[c // (2 * flags)], FLAGS[c // 2 % flags], bool(c % 2)): int(counts[c])
                             for c in np.flatnonzero(counts).tolist()})
        return ChunkOutput(value_texts, value_codes.astype(np.int64), codes.astype(np.int64), key_list, fields,
                           errors, d_after[kept_index], derived_value, self.cc.calcium_unit, derived_patient,
                           abnormal, critical)

    def _texts(self, values: list[float]) -> list[str]:
        """Shortest round-trip text of each value (NaN, no value: ""), through the cache while values
        repeat; after a chunk of mostly new values, the next ones skip it (a miss costs more than repr)."""
        if self._uncached_chunks:
            self._uncached_chunks -= 1
            texts = list(map(repr, values))
            if values and values[-1] != values[-1]:  # np.unique puts its one NaN last
                texts[-1] = ""
            return texts
        if len(self._text_of) > MAX_TEXTS:
            self._text_of.clear()
        misses = self._text_of.misses
        texts = list(map(self._text_of.__getitem__, values))
        if self._text_of.misses - misses > 0.75 * len(values) and len(self._text_of) > MAX_TEXTS // 2:
            self._uncached_chunks = UNCACHED_CHUNKS  # judged on a cache that has seen enough values
        return texts

    def _fields_for(self, key: int, r: int, all_sel: IntArray, all_analyte: IntArray, v: Verdicts,
                    bits: IntArray, n: int) -> tuple[str, ...]:
        cached = self._fields.get(key)
        if cached is not None:
            return cached
        if key < 0:
            out: tuple[str, ...] = ("",) * (len(OUTPUT_COLUMNS) - 2)
        else:
            sel = int(all_sel[r])
            s = self._sel
            has = sel >= 0 and s.has[sel]
            out = (
                self.canonical_unit[int(all_analyte[r])],
                _fmt(s.low[sel]) if has else "",
                _fmt(s.high[sel]) if has else "",
                CLASSIFICATIONS[int(v.classification[r])],
                ("", "LL", "L", "N", "H", "HH")[int(v.flag[r])],
                "true" if v.critical[r] else "false",
                "" if v.grade[r] == 0 else str(int(v.grade[r])),
                self._warnings(int(bits[r]), r >= n),
                s.origin[sel] if has else "",
                s.source[sel] if has else "",
            )
        self._fields[key] = out
        return out

    def _row_error(self, chunk: RowChunk, i: int, pid: int, disagrees: bool, spec_bad: bool,
                   value_bad: bool, combo_ok: bool, first_row: int) -> str:
        """A bad row's error: the engine's own reasons, with the file's line number."""
        reasons: list[str] = []
        if i in chunk.row_problems:
            reasons.append(chunk.row_problems[i])
            if chunk.row_problems[i] == EMPTY_LINE:
                return f"line {chunk.lines[i]}: {EMPTY_LINE}"
        if chunk.specimen_id_empty[i]:
            reasons.append("specimen_id: must not be empty")
        reasons.extend(self._patient_errors[pid])
        if disagrees:
            reasons.append("age_years, age_days or sex differs from an earlier row with this specimen_id "
                           f"(the panel starts at line {chunk.lines[first_row]})")
        if value_bad or spec_bad or not combo_ok:
            raw = chunk.texts("value", [i])[0].strip()
            number: Any = raw
            cmp = None
            read = read_result(raw)
            if read is not None:
                number, cmp = read
            specimen = (chunk.specimen.text(i).strip() or None) if chunk.specimen is not None else None
            result = ResultInput(chunk.analyte.text(i), number, chunk.unit.text(i), comparator=cmp, specimen=specimen)
            patient = self._patients[pid] if not self._patient_errors[pid] else Patient()
            try:
                self.engine.prepare(self.k, Panel((result,), patient, None, self.lab))
            except InvalidInput as exc:
                reasons.extend(f"{'/'.join(str(p) for p in e.path[2:]) or '/'.join(map(str, e.path))}: "
                               f"{e.reason}" for e in exc.errors)
        return f"line {chunk.lines[i]}: " + "; ".join(reasons or ["cannot be interpreted"])


class _Cache(dict):  # type: ignore[type-arg]
    """A dict that computes a missing entry once, so lookups can run through map() at C speed."""

    def __init__(self, compute: Any):
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self.compute(key)
        return value


class _TextOf(dict):  # type: ignore[type-arg]
    """Shortest round-trip text of a float, each computed once; NaN (no value) is an empty string
    (and not kept: every NaN object is a new key)."""

    misses = 0

    def __missing__(self, value: float) -> str:
        self.misses += 1
        if value != value:
            return ""
        text = self[value] = repr(value)
        return text


def _age(text: str, name: str, limit: float, problems: list[str]) -> float | None:
    text = text.strip()
    if not text:
        return None
    value = read_number(text)
    if value is None:
        problems.append(f"{name}: must be a number")
        return None
    if not math.isfinite(value) or value < 0 or value > limit:
        problems.append(f"{name}: must be a finite number from 0 to {limit:g}")
        return None
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
                    comparator[i] = _CMP_CODE[read[1]]
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
