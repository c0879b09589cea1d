"""Reference data: loaded from reference_ranges/, validated, and frozen for the engine."""

from __future__ import annotations

import dataclasses
import math
import re
import string
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from labinterp.core.errors import DataError
from labinterp.core.model import SEXES, SPECIMENS
from labinterp.core.units import DIMENSION_KINDS, fold_spelling, mass_or_molar_factor

# In the source tree labinterp/reference_ranges links to the top-level reference_ranges/; an
# installed package carries the files themselves there.
DEFAULT_DATA_DIR = (Path(__file__).parent.parent / "reference_ranges").resolve()
DATA_FILES = (
    "sources.toml", "analytes.toml", "units.toml", "intervals.toml", "limits.toml",
    "ctcae.toml", "symptoms.toml", "patterns.toml", "corrected_calcium.toml", "messages.toml",
)
# Files a laboratory profile may supply; each overlays the defaults analyte by analyte.
PROFILE_FILES = ("profile.toml", "intervals.toml", "limits.toml", "units.toml", "sources.toml", "codes.toml",
                 "verification.toml")
LOINC_SYSTEMS = ("http://loinc.org", "LN")  # FHIR Coding.system, HL7 v2 coding system (table 0396)
DAYS_PER = {"d": 1.0, "w": 7.0, "mo": 30.4375, "y": 365.25}
_AGE = re.compile(r"^(\d+(?:\.\d+)?)(d|w|mo|y)$")
LOW_COMPARISONS = ("<=", "<")
HIGH_COMPARISONS = (">=", ">")
SYSTEMS = ("muscle", "nerve", "other")
# A figure written as a string keeps the precision its source states it with ("1.10" has two
# decimals); a TOML number gives the decimals of its shortest text (1.1 has one).
_STATED = re.compile(r"^\d+(?:\.(\d+))?$")
# Unit families: a result is compared with the figure its source states in the result's own family.
FAMILIES = ("mass", "molar")
# What "beyond an edge" means once the edge is compared at the precision it is stated with:
# round(x) <= e  <=>  x <  e + h;   round(x) < e  <=>  x <  e - h;
# round(x) >= e  <=>  x >= e - h;   round(x) > e  <=>  x >= e + h   (h = half a unit in the last
# stated decimal, rounding half up as laboratories report).
_ADJUSTED = {"<=": ("<", 1), "<": ("<", -1), ">=": (">=", -1), ">": (">=", 1)}


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    url: str


@dataclass(frozen=True)
class LoincCode:
    code: str
    analyte: str
    property: str
    display: str
    specimen: str | None


@dataclass(frozen=True)
class LocalCode:
    """A laboratory's own code (its profile's codes.toml): what analyte it names, and what it implies."""

    system: str
    code: str
    analyte: str
    specimen: str | None
    unit: str | None
    entry: str


@dataclass(frozen=True)
class Analyte:
    id: str
    display: str
    canonical_unit: str
    molar_mass: float | None
    valence: int | None
    condition_low: str
    condition_high: str
    loinc: tuple[LoincCode, ...]
    derived: bool
    source: str


@dataclass(frozen=True)
class UnitDef:
    ucum: str
    kind: str
    pint: str


def unit_family(kind: str) -> str:
    """'mass' for a mass unit, 'molar' for molar and equivalent units (a fixed ratio apart)."""
    return "mass" if kind == "mass" else "molar"


@dataclass(frozen=True)
class Figure:
    """One number as its source states it: value, text, decimals, unit, and its exact canonical value."""

    value: float
    text: str
    decimals: int
    unit: str
    family: str
    factor: float
    source: str

    @property
    def canonical(self) -> float:
        return self.value * self.factor


@dataclass(frozen=True)
class EdgeBasis:
    """What an answer's basis shows about the edge a result was compared with."""

    figure: str
    stated: str
    stated_unit: str
    stated_family: str
    result_family: str
    decimals: int
    precision_adjusted: bool
    comparison: str
    canonical: float
    canonical_unit: str
    source: str

    def as_json(self) -> dict[str, Any]:
        return dict(self.items)

    @cached_property
    def items(self) -> tuple[tuple[str, Any], ...]:
        """The fields as (name, value) pairs, in the order an answer shows them: built once per edge."""
        return (("figure", self.figure), ("stated", self.stated), ("stated_unit", self.stated_unit),
                ("stated_family", self.stated_family), ("result_family", self.result_family),
                ("decimals", self.decimals), ("precision_adjusted", self.precision_adjusted),
                ("comparison", self.comparison), ("canonical", self.canonical),
                ("canonical_unit", self.canonical_unit), ("source", self.source))


@dataclass(frozen=True)
class ComparisonEdge:
    """A canonical edge and its comparison: a canonical value `v` is beyond it when `v <comparison> value`."""

    value: float
    comparison: str
    basis: EdgeBasis

    @property
    def inclusive(self) -> bool:
        return self.comparison in ("<=", ">=")

    def beyond(self, canonical_value: float) -> bool:
        v, e = canonical_value, self.value
        return {"<": v < e, "<=": v <= e, ">": v > e, ">=": v >= e}[self.comparison]


@dataclass(frozen=True)
class EdgeSide:
    """One side of a limit, interval or grade: the figures its source states (one per unit family at
    most) and what 'beyond' means there. `edge(family)` gives what a result of that family is compared with."""

    figure: str
    beyond_when: str
    figures: tuple[Figure, ...]
    canonical_unit: str
    edges: dict[str, ComparisonEdge] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for family in FAMILIES:
            self.edges[family] = self._edge(family)

    def figure_in(self, family: str) -> Figure | None:
        return next((f for f in self.figures if f.family == family), None)

    def edge(self, family: str) -> ComparisonEdge:
        """The edge for a result of unit family 'mass' or 'molar' ('equivalent' counts as molar)."""
        return self.edges[unit_family(family)]

    def _edge(self, family: str) -> ComparisonEdge:
        own = self.figure_in(family)
        if own is not None:
            return ComparisonEdge(own.canonical, self.beyond_when, self._basis(own, family, False,
                                                                                self.beyond_when, own.canonical))
        stated = self.figures[0]
        comparison, sign = _ADJUSTED[self.beyond_when]
        # in decimal, so 4.9 - 0.05 is 4.85 and not 4.8500000000000005
        half = Decimal(5).scaleb(-(stated.decimals + 1))
        value = float(Decimal(stated.text) + sign * half) * stated.factor
        return ComparisonEdge(value, comparison, self._basis(stated, family, True, comparison, value))

    def _basis(self, stated: Figure, family: str, adjusted: bool, comparison: str, value: float) -> EdgeBasis:
        return EdgeBasis(self.figure, stated.text, stated.unit, stated.family, family, stated.decimals,
                         adjusted, comparison, value, self.canonical_unit, stated.source)


def _age_applies(age_from: float, age_to: float, from_included: bool, to_included: bool, age: float) -> bool:
    above = age >= age_from if from_included else age > age_from
    below = age <= age_to if to_included else age < age_to
    return above and below


def _bands_overlap(a: Any, b: Any) -> bool:
    """True when two age bands share any age, honouring whether each edge is included."""
    if a.age_from < b.age_to and b.age_from < a.age_to:
        return True
    touch_ab = a.age_to == b.age_from and a.age_to_included and b.age_from_included
    touch_ba = b.age_to == a.age_from and b.age_to_included and a.age_from_included
    return bool(touch_ab or touch_ba)


def describe_band(words: dict[str, str], age_from: float, age_to: float, from_included: bool,
                  to_included: bool) -> str:
    """In the data's words ([phrase]): '7 days to under 180 days' for [7, 180), 'over 7 days to 180 days' for
    (7, 180], 'from 18 years'."""
    start = format_age(words, age_from)
    if age_to == math.inf:
        return words["phrase.band_from" if from_included else "phrase.band_over"].format(start=start)
    key = ("phrase.band_from_to" if from_included else "phrase.band_over_to") + ("" if to_included else "_under")
    return words[key].format(start=start, end=format_age(words, age_to))


class _Sided:
    """What an interval and a critical limit share: the edge of each side for a unit family, and where the rule
    applies in the data's words."""

    low_side: EdgeSide | None
    high_side: EdgeSide | None
    applies_to: str

    def low_edge(self, family: str) -> ComparisonEdge | None:
        """The low side's edge (its comparison), for a result of unit family `family`: beyond it an interval's
        result is low, a critical limit's LL."""
        return None if self.low_side is None else self.low_side.edge(family)

    def high_edge(self, family: str) -> ComparisonEdge | None:
        return None if self.high_side is None else self.high_side.edge(family)

    def describe(self) -> str:
        """Where the rule applies (a limit: its age band), in the data's words (written once, when the data
        loads)."""
        return self.applies_to


@dataclass(frozen=True)
class Interval(_Sided):
    """A reference interval rule, bounds already in the canonical unit (inclusive)."""

    analyte: str
    specimens: tuple[str, ...]
    sex: str
    age_from: float
    age_to: float
    low: float | None
    high: float | None
    unit: str
    stated_low: float | None
    stated_high: float | None
    source: str
    established: bool
    reason: str
    adult_default: bool
    origin: str
    entry: str
    age_from_included: bool = True
    age_to_included: bool = False
    ages_stated: str = ""
    low_side: EdgeSide | None = None
    high_side: EdgeSide | None = None
    borrowed: str = ""
    applies_to: str = field(default="", compare=False)  # where it applies, in the data's words (set at load)

    def applies_to_age(self, age_days: float) -> bool:
        return _age_applies(self.age_from, self.age_to, self.age_from_included, self.age_to_included, age_days)

    def applies(self, specimen: str, sex: str | None, age_days: float) -> bool:
        return (specimen in self.specimens and self.applies_to_age(age_days)
                and (self.sex == "any" or self.sex == sex))


@dataclass(frozen=True)
class Critical(_Sided):
    analyte: str
    age_from: float
    age_to: float
    low: float | None
    low_inclusive: bool
    high: float | None
    high_inclusive: bool
    unit: str
    stated_low: float | None
    stated_high: float | None
    low_missing_reason: str
    high_missing_reason: str
    source: str
    origin: str
    age_from_included: bool = True
    age_to_included: bool = False
    ages_stated: str = ""
    low_side: EdgeSide | None = None
    high_side: EdgeSide | None = None
    note: str = ""
    comparison_note: str = ""
    applies_to: str = field(default="", compare=False)  # its age band, in the data's words (set at load)

    def applies(self, age_days: float) -> bool:
        """Whether this limit's age band holds `age_days`, each edge included or not as the data says."""
        return _age_applies(self.age_from, self.age_to, self.age_from_included, self.age_to_included, age_days)



@dataclass(frozen=True)
class Implausible:
    analyte: str
    low: float | None
    high: float | None
    unit: str
    stated_low: float | None
    stated_high: float | None
    reasoning: str
    source: str


@dataclass(frozen=True)
class CtcaeTerm:
    term: str
    direction: str
    analyte: str
    unit: str
    stated_edges: tuple[float, float, float]
    edges: tuple[float, float, float]
    note: str
    source: str
    sides: tuple[EdgeSide | None, EdgeSide | None, EdgeSide | None] = (None, None, None)

    def grade_edges(self, family: str) -> tuple[ComparisonEdge | None, ComparisonEdge | None, ComparisonEdge | None]:
        """For grades 2, 3, 4: the edge a result of unit family `family` must pass (None: no edge)."""
        return tuple(None if side is None else side.edge(family) for side in self.sides)  # type: ignore[return-value]


@dataclass(frozen=True)
class Symptom:
    condition: str
    system: str
    text: str
    source: str
    row: str


@dataclass(frozen=True)
class PatternRequirement:
    any_of: tuple[str, ...]
    classification: str


@dataclass(frozen=True)
class Pattern:
    id: str
    title: str
    text: str
    requires: tuple[PatternRequirement, ...]
    source: str


@dataclass(frozen=True)
class CorrectedCalcium:
    formula: str
    slope: float
    reference_albumin: float
    calcium_unit: str
    albumin_unit: str
    interval_analyte: str
    source: str
    limitations: str
    limitations_source: str
    slope_sources: tuple[str, ...] = ()
    original_source: str = ""
    applies_age_from: float = 0.0
    applies_albumin: str = "any"
    applies_reasoning: str = ""

    def applies(self, age_days: float | None, albumin_flag: str | None) -> bool:
        """Whether the formula holds for this patient. `albumin_flag` is the albumin result's flag ("L", "N",
        "H", ...; None when it has none). An unknown age is not assumed adult here."""
        return self.applies_at_age(age_days) and self.applies_to_albumin(albumin_flag in ("L", "LL"))

    def applies_at_age(self, age_days: float | None) -> bool:
        """The age half of applies (applies_age_from): the engine withholds the derived value outside it."""
        return age_days is not None and age_days >= self.applies_age_from

    def applies_to_albumin(self, albumin_low: bool) -> bool:
        """The albumin half of applies (applies_albumin "below_interval": low albumin only; "any"): outside it the
        engine gives the derived value with a warning that says so."""
        return self.applies_albumin != "below_interval" or albumin_low


@dataclass(frozen=True)
class Caveat:
    """A warning for every result of a group of patients (sex, age band), with its reasoning."""

    code: str
    text: str
    source: str
    sex: str
    age_from: float
    age_to: float
    age_from_included: bool
    age_to_included: bool
    ages_stated: str
    reasoning: str

    def applies(self, sex: str | None, age_days: float | None) -> bool:
        if age_days is None or (self.sex != "any" and sex != self.sex):
            return False
        return _age_applies(self.age_from, self.age_to, self.age_from_included, self.age_to_included, age_days)


@dataclass(frozen=True)
class Knowledge:
    """Everything clinical the engine knows, validated and frozen."""

    data_version: str
    disclaimer: str
    symptoms_note: str
    sources: dict[str, Source]
    analytes: dict[str, Analyte]
    loinc: dict[str, LoincCode]
    units: dict[str, UnitDef]
    spellings_exact: dict[str, str]
    spellings_folded: dict[str, str]
    factors: dict[tuple[str, str], float]
    intervals: dict[str, tuple[Interval, ...]]
    critical: dict[str, tuple[Critical, ...]]
    implausible: dict[str, Implausible]
    ctcae: dict[tuple[str, str], CtcaeTerm]
    symptoms: dict[str, tuple[Symptom, ...]]
    symptom_notes: dict[str, tuple[Symptom, ...]]
    coverage: dict[str, str]
    patterns: tuple[Pattern, ...]
    corrected_calcium: CorrectedCalcium
    messages: dict[str, dict[str, str]]
    data_dir: str
    words: dict[str, str] = field(default_factory=dict)  # refusal reasons and unit kinds (messages.toml)
    caveats: dict[str, Caveat] = field(default_factory=dict)
    lab: str | None = None
    lab_title: str | None = None
    profiles: dict[str, Knowledge] = field(default_factory=dict, compare=False)
    local_codes: dict[tuple[str, str], LocalCode] = field(default_factory=dict)

    def resolve_unit(self, text: str) -> str | None:
        """The UCUM code for a spelling, or None: never a guess."""
        folded = fold_spelling(text.strip())
        return self.spellings_exact.get(folded) or self.spellings_folded.get(folded.lower())

    def source_title(self, source_id: str) -> str:
        return self.sources[source_id].title

    def factor(self, analyte: str, ucum: str) -> float | None:
        return self.factors.get((analyte, ucum))

    def accepted_units(self, analyte: str) -> list[str]:
        return [ucum for (a, ucum) in self.factors if a == analyte]

    def unit_family(self, ucum: str) -> str:
        """'mass' or 'molar' (equivalents count as molar) for a UCUM code the data defines."""
        return unit_family(self.units[ucum].kind)

    def caveats_for(self, sex: str | None, age_days: float | None) -> list[Caveat]:
        """The caveats to show on every result of this patient (e.g. pregnancy not modelled)."""
        return [c for c in self.caveats.values() if c.applies(sex, age_days)]


def format_age(words: dict[str, str], days: float) -> str:
    """An age in the data's words ([phrase]): whole years when it is a whole number of years, else days."""
    if days == 0:
        return words["phrase.age_birth"]
    for unit, length in (("years", 365.25), ("days", 1.0)):
        count = days / length
        if unit == "days" or abs(count - round(count)) < 1e-9:
            shown = round(count) if abs(count - round(count)) < 1e-9 else round(count, 2)
            return words[f"phrase.age_{unit}"].format(count=shown)
    return words["phrase.age_days"].format(count=days)  # pragma: no cover


class _Problems:
    """Collects (file, entry, problem) triples so one load reports every problem."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, file: str, entry: str, problem: str) -> None:
        self.items.append((file, entry, problem))

    def raise_if_any(self) -> None:
        if self.items:
            raise DataError(self.items)


def _read(path: Path, problems: _Problems) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        problems.add(path.name, "-", "file is missing")
    except tomllib.TOMLDecodeError as exc:
        problems.add(path.name, "-", f"not valid TOML: {exc}")
    return {}


def parse_age(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    match = _AGE.match(text.strip())
    if not match:
        return None
    return float(match.group(1)) * DAYS_PER[match.group(2)]


class _Entry:
    """Typed access to one TOML table, reporting problems with file and entry."""

    def __init__(self, file: str, name: str, table: Any, problems: _Problems):
        self.file, self.name, self.problems = file, name, problems
        self.table = table if isinstance(table, dict) else {}
        if not isinstance(table, dict):
            problems.add(file, name, "must be a table")

    def problem(self, text: str) -> None:
        self.problems.add(self.file, self.name, text)

    def get(self, key: str, kind: type | tuple[type, ...], required: bool = True,
            default: Any = None, check: Callable[[Any], str | None] | None = None) -> Any:
        if key not in self.table:
            if required:
                self.problem(f"'{key}' is required")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.problem(f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}")
            return default
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(f"'{key}' must be finite")
            return default
        if check is not None:
            message = check(value)
            if message:
                self.problem(f"'{key}' {message}")
                return default
        return value

    def unknown_keys(self, allowed: Iterable[str]) -> None:
        extra = sorted(set(self.table) - set(allowed))
        if extra:
            self.problem(f"unknown keys {extra}")


def _one_of(options: Iterable[str]) -> Callable[[Any], str | None]:
    options = tuple(options)
    return lambda value: None if value in options else f"must be one of {list(options)}"


def _known(ids: Iterable[str], what: str) -> Callable[[Any], str | None]:
    ids = set(ids)
    return lambda value: None if value in ids else f"names an unknown {what} '{value}'"


def load_knowledge(data_dir: str | Path | None = None, labs_dir: str | Path | None = None,
                   ) -> Knowledge:
    """Load and validate the default data, then every laboratory profile under labs_dir."""
    base = _load(Path(data_dir) if data_dir else DEFAULT_DATA_DIR)
    if labs_dir:
        profiles: dict[str, Knowledge] = {}
        root = Path(labs_dir)
        if not root.is_dir():
            raise DataError([(str(root), "-", "laboratory directory does not exist")])
        for profile_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            profiles[profile_dir.name] = load_profile(base, profile_dir)
        base.profiles.update(profiles)
    return base


def load_profile(base: Knowledge, profile_dir: Path) -> Knowledge:
    """A laboratory's profile: its own files overlay the defaults, analyte by analyte."""
    problems = _Problems()
    name = profile_dir.name
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
        problems.add(name, "-", "profile name must be letters, digits, '.', '_' or '-'")
    present = {p.name for p in profile_dir.iterdir() if p.is_file()}
    for unexpected in sorted(present - set(PROFILE_FILES)):
        if unexpected.endswith(".toml"):
            problems.add(unexpected, "-", f"a laboratory profile may only contain {list(PROFILE_FILES)}")
    raw = {f: _read(profile_dir / f, problems) for f in PROFILE_FILES if f in present}
    problems.raise_if_any()
    meta = raw.get("profile.toml", {})
    title = meta.get("title", name) if isinstance(meta, dict) else name
    return _build(raw, problems, base=base, lab=name, lab_title=str(title), data_dir=str(profile_dir))


def _load(data_dir: Path) -> Knowledge:
    problems = _Problems()
    raw = {f: _read(data_dir / f, problems) for f in DATA_FILES}
    problems.raise_if_any()
    return _build(raw, problems, base=None, lab=None, lab_title=None, data_dir=str(data_dir))


def _build(raw: dict[str, dict[str, Any]], problems: _Problems, base: Knowledge | None,
           lab: str | None, lab_title: str | None, data_dir: str) -> Knowledge:
    origin = "laboratory" if base else "default"
    sources = dict(base.sources) if base else {}
    src = raw.get("sources.toml", {})
    for i, table in enumerate(src.get("source", [])):
        e = _Entry("sources.toml", f"source[{i}]", table, problems)
        e.unknown_keys(("id", "title", "url"))
        sid = e.get("id", str)
        if sid in sources and (base is None or sid in base.sources):
            e.problem(f"duplicate source id '{sid}'")
        if sid:
            sources[sid] = Source(sid, e.get("title", str, default=""), e.get("url", str, default=""))
    known_source = _known(sources, "source")

    if base is None:
        top = _Entry("sources.toml", "top level", src, problems)
        data_version = top.get("data_version", str, default="")
        disclaimer = top.get("disclaimer", str, default="")
        symptoms_note = top.get("symptoms_note", str, default="")
        analytes, loinc = _analytes(raw["analytes.toml"], problems, known_source)
        units, exact, folded = _units(raw["units.toml"], problems, {})
    else:
        meta = raw.get("profile.toml", {})
        top = _Entry("profile.toml", "top level", meta, problems)
        top.unknown_keys(("title", "data_version", "description"))
        lab_version = top.get("data_version", str, required=bool(meta), default="unversioned")
        data_version = f"{base.data_version}+{lab}.{lab_version}"
        disclaimer, symptoms_note = base.disclaimer, base.symptoms_note
        analytes, loinc = base.analytes, base.loinc
        units, exact, folded = _units(raw.get("units.toml", {}), problems,
                                      {"units": base.units, "exact": base.spellings_exact,
                                       "folded": base.spellings_folded})
    problems.raise_if_any()

    factors = dict(base.factors) if base else {}
    for analyte in analytes.values():
        for unit in units.values():
            if (analyte.id, unit.ucum) in factors:
                continue
            factor = mass_or_molar_factor(unit.pint, unit.kind, analyte.canonical_unit,
                                          analyte.molar_mass, analyte.valence)
            if factor is not None:
                factors[(analyte.id, unit.ucum)] = factor

    def convert(file: str, entry: str, analyte: str, value: float | None, unit: str) -> float | None:
        if value is None:
            return None
        ucum = exact.get(unit)
        factor = factors.get((analyte, ucum)) if ucum else None
        if factor is None:
            problems.add(file, entry, f"unit '{unit}' cannot be converted for {analyte}")
            return None
        return value * factor

    def figure(file: str, entry: str, analyte: str, stated: Stated | None, unit: str,
               source: str) -> Figure | None:
        if stated is None:
            return None
        ucum = exact.get(unit)
        factor = factors.get((analyte, ucum)) if ucum else None
        if factor is None or ucum is None:
            problems.add(file, entry, f"unit '{unit}' cannot be converted for {analyte}")
            return None
        return Figure(stated[0], stated[1], stated[2], ucum, unit_family(units[ucum].kind), factor, source)

    def side(analyte: str, what: str, beyond_when: str, figures: list[Figure | None]) -> EdgeSide | None:
        present = tuple(f for f in figures if f is not None)
        if not present:
            return None
        return EdgeSide(what, beyond_when, present, analytes[analyte].canonical_unit)

    words = base.words if base is not None else _words(raw["messages.toml"], problems)
    intervals = _intervals(raw.get("intervals.toml", {}), problems, analytes, known_source,
                           figure, side, origin)
    critical, implausible = _limits(raw.get("limits.toml", {}), problems, analytes,
                                    known_source, figure, side, convert, origin, base is None)
    if base is not None:
        intervals = _overlay_intervals(base.intervals, intervals)
        critical = {**base.critical, **critical}
        implausible = {**base.implausible, **implausible}
        ctcae, symptoms, notes = base.ctcae, base.symptoms, base.symptom_notes
        coverage, patterns, corrected = base.coverage, base.patterns, base.corrected_calcium
        messages, caveats = base.messages, base.caveats
    else:
        ctcae = _ctcae(raw["ctcae.toml"], problems, analytes, known_source, figure, side)
        symptoms, notes, coverage = _symptoms(raw["symptoms.toml"], problems, analytes, known_source)
        patterns = _patterns(raw["patterns.toml"], problems, analytes, known_source)
        corrected = _corrected(raw["corrected_calcium.toml"], problems, analytes, known_source, exact)
        messages, caveats = _messages(raw["messages.toml"], problems, known_source)
    if all(f"phrase.{key}" in words for key in PHRASE_FIELDS):  # else messages.toml's problems are reported
        intervals, critical = _described(words, intervals, critical)
    _check_limits_outside_intervals(intervals, critical, problems)
    _check_adult_defaults(intervals, problems)
    local_codes = _local_codes(raw.get("codes.toml", {}), problems, analytes, exact, folded)
    problems.raise_if_any()
    return Knowledge(
        data_version=data_version, disclaimer=disclaimer, symptoms_note=symptoms_note,
        sources=sources, analytes=analytes, loinc=loinc, units=units, spellings_exact=exact,
        spellings_folded=folded, factors=factors, intervals=intervals, critical=critical,
        implausible=implausible, ctcae=ctcae, symptoms=symptoms, symptom_notes=notes,
        coverage=coverage, patterns=patterns, corrected_calcium=corrected, messages=messages, words=words,
        data_dir=data_dir, lab=lab, lab_title=lab_title, caveats=caveats, local_codes=local_codes,
    )


def _described(words: dict[str, str], intervals: dict[str, tuple[Interval, ...]],
               critical: dict[str, tuple[Critical, ...]],
               ) -> tuple[dict[str, tuple[Interval, ...]], dict[str, tuple[Critical, ...]]]:
    """Each rule with where it applies in the data's words ([phrase]), written once, at load."""
    def interval(r: Interval) -> Interval:
        ages = describe_band(words, r.age_from, r.age_to, r.age_from_included, r.age_to_included)
        specimens = "/".join(r.specimens)
        text = (words["phrase.applies_to"].format(ages=ages, specimens=specimens) if r.sex == "any" else
                words["phrase.applies_to_sex"].format(ages=ages, sex=r.sex, specimens=specimens))
        return dataclasses.replace(r, applies_to=text)

    def limit(c: Critical) -> Critical:
        return dataclasses.replace(c, applies_to=describe_band(words, c.age_from, c.age_to, c.age_from_included,
                                                               c.age_to_included))

    return ({a: tuple(map(interval, rules)) for a, rules in intervals.items()},
            {a: tuple(map(limit, rules)) for a, rules in critical.items()})


def _local_codes(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
                 exact: dict[str, str], folded: dict[str, str]) -> dict[tuple[str, str], LocalCode]:
    """A profile's codes.toml: each (system, code) names one analyte; no code is a LOINC code in disguise."""
    out: dict[tuple[str, str], LocalCode] = {}
    readable = [a for a, v in analytes.items() if not v.derived]
    for i, table in enumerate(doc.get("code", [])):
        e = _Entry("codes.toml", f"code[{i}]", table, problems)
        e.unknown_keys(("system", "code", "analyte", "specimen", "unit", "display"))
        system = e.get("system", str, check=lambda v: None if v.strip() == v and v else "must be a non-empty "
                       "system name without surrounding spaces")
        code = e.get("code", str, check=lambda v: None if v.strip() == v and v else "must be a non-empty code "
                     "without surrounding spaces")
        e.name = f"code[{i}] ({system}|{code})"
        analyte = e.get("analyte", str, check=lambda v: None if v in readable else
                        f"names an unknown analyte '{v}' (use one of {readable})")
        specimen = e.get("specimen", str, required=False, check=_one_of(SPECIMENS))
        unit = e.get("unit", str, required=False)
        if unit is not None:
            spelt = fold_spelling(unit.strip())
            if (exact.get(spelt) or folded.get(spelt.lower())) is None:
                e.problem(f"unit '{unit}' is not a unit the data knows")
        if system in LOINC_SYSTEMS:
            e.problem(f"system '{system}' is LOINC: LOINC codes are defined in analytes.toml, not mapped here")
        if system and code:
            if (system, code) in out:
                e.problem(f"duplicate system and code: already mapped by {out[(system, code)].entry}")
            else:
                out[(system, code)] = LocalCode(system, code, analyte or "", specimen, unit, e.name)
    return out


def _analytes(doc: dict[str, Any], problems: _Problems, known_source: Callable[[Any], str | None],
              ) -> tuple[dict[str, Analyte], dict[str, LoincCode]]:
    analytes: dict[str, Analyte] = {}
    loinc: dict[str, LoincCode] = {}
    allowed = ("id", "display", "canonical_unit", "molar_mass", "valence", "element_source",
               "source", "condition_low", "condition_high", "loinc", "derived")
    for i, table in enumerate(doc.get("analyte", [])):
        e = _Entry("analytes.toml", f"analyte[{i}]", table, problems)
        e.unknown_keys(allowed)
        aid = e.get("id", str, check=lambda v: None if re.match(r"^[a-z_]+$", v) else "must be lower_snake_case")
        e.name = f"analyte '{aid}'"
        if aid in analytes:
            e.problem("duplicate analyte id")
        molar_mass = e.get("molar_mass", float, required=False,
                           check=lambda v: None if v > 0 else "must be positive")
        valence = e.get("valence", int, required=False,
                        check=lambda v: None if v > 0 else "must be a positive whole number")
        if molar_mass is not None:
            e.get("element_source", str, check=known_source)
        codes = []
        for j, code_table in enumerate(e.get("loinc", list, default=[])):
            c = _Entry("analytes.toml", f"analyte '{aid}' loinc[{j}]", code_table, problems)
            c.unknown_keys(("code", "property", "display", "specimen"))
            code = c.get("code", str, check=lambda v: None if re.match(r"^\d{1,7}-\d$", v) else "is not a LOINC code")
            if code in loinc:
                c.problem(f"LOINC code {code} is listed twice")
            item = LoincCode(code or "", aid or "", c.get("property", str, check=_one_of(("mass", "molar"))),
                             c.get("display", str, default=""),
                             c.get("specimen", str, required=False, check=_one_of(SPECIMENS)))
            codes.append(item)
            if code:
                loinc[code] = item
        if not codes:
            e.problem("needs at least one LOINC code")
        analytes[aid or f"?{i}"] = Analyte(
            id=aid or "", display=e.get("display", str, default=""),
            canonical_unit=e.get("canonical_unit", str, check=_one_of(("mmol/L", "g/L"))),
            molar_mass=molar_mass, valence=valence,
            condition_low=e.get("condition_low", str, default=""),
            condition_high=e.get("condition_high", str, default=""),
            loinc=tuple(codes), derived=e.get("derived", bool, required=False, default=False),
            source=e.get("source", str, check=known_source, default=""),
        )
    if not analytes:
        problems.add("analytes.toml", "-", "defines no analyte")
    return analytes, loinc


def _units(doc: dict[str, Any], problems: _Problems, base: dict[str, dict[str, Any]],
           ) -> tuple[dict[str, UnitDef], dict[str, str], dict[str, str]]:
    units: dict[str, UnitDef] = dict(base.get("units", {}))
    exact: dict[str, str] = dict(base.get("exact", {}))
    folded: dict[str, str] = dict(base.get("folded", {}))
    for i, table in enumerate(doc.get("unit", [])):
        e = _Entry("units.toml", f"unit[{i}]", table, problems)
        e.unknown_keys(("ucum", "kind", "pint", "spellings"))
        ucum = e.get("ucum", str)
        e.name = f"unit '{ucum}'"
        kind = e.get("kind", str, check=_one_of(("mass", "molar", "equivalent")))
        expr = e.get("pint", str, check=lambda v: None if re.match(r"^[a-z /*]+$", v)
                     else "may only use unit names, '/', '*' and spaces")
        if ucum and kind and expr:
            try:
                mass_or_molar_factor(expr, "molar" if kind == "equivalent" else kind,
                                     "mmol/L" if kind != "mass" else "g/L", None, None)
            except Exception as exc:  # noqa: BLE001 - report any pint failure as data problem
                e.problem(f"pint cannot convert '{expr}' to a {kind} concentration: {exc}")
                continue
            units[ucum] = UnitDef(ucum, kind, expr)
            for spelling in [ucum, *e.get("spellings", list, default=[])]:
                key = fold_spelling(spelling)
                if exact.get(key, ucum) != ucum:
                    e.problem(f"spelling '{spelling}' already belongs to {exact[key]}")
                exact[key] = ucum
                if "/" in key or "%" in key:
                    if folded.get(key.lower(), ucum) != ucum:
                        e.problem(f"spelling '{spelling}' is ambiguous without case")
                    folded[key.lower()] = ucum
    return units, exact, folded


def _age_band(e: _Entry) -> tuple[float, float, bool, bool, str]:
    """An age band: its two edges, whether each is included, and the source's own words for it."""
    age_from = parse_age(e.get("age_from", str, required=False, default="0d"))
    to_text = e.get("age_to", str, required=False)
    age_to = math.inf if to_text is None else parse_age(to_text)
    from_included = e.get("age_from_included", bool, required=False, default=True)
    to_included = e.get("age_to_included", bool, required=False, default=False)
    stated = e.get("ages_stated", str, required=False, default="")
    if age_from is None or age_to is None:
        e.problem("ages must be written like '14d', '6mo', '1y'")
        return 0.0, math.inf, True, False, stated
    if age_to <= age_from:
        e.problem("age_to must be after age_from")
    if to_text is None and to_included:
        e.problem("'age_to_included' needs an 'age_to'")
    return age_from, age_to, from_included, to_included, stated


Stated = tuple[float, str, int]


def _stated(e: _Entry, key: str, table: dict[str, Any] | None = None, required: bool = False) -> Stated | None:
    """A number as its source states it: from a TOML number, or a string that keeps its decimals."""
    source = e.table if table is None else table
    if key not in source:
        if required:
            e.problem(f"'{key}' is required")
        return None
    return _parse_stated(e, key, source[key])


def _parse_stated(e: _Entry, key: str, raw: Any) -> Stated | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        e.problem(f"'{key}' must be a number, or a string such as \"1.10\" that keeps its stated decimals")
        return None
    if isinstance(raw, float) and not math.isfinite(raw):
        e.problem(f"'{key}' must be finite")
        return None
    text = raw.strip() if isinstance(raw, str) else repr(raw)
    match = _STATED.match(text)
    if not match:
        e.problem(f"'{key}' must be a non-negative number written plainly, such as 1.10 (not {raw!r})")
        return None
    return float(text), text, len(match.group(1) or "")


FigureMaker = Callable[[str, str, str, "Stated | None", str, str], "Figure | None"]
SideMaker = Callable[[str, str, str, list["Figure | None"]], "EdgeSide | None"]


def _also(e: _Entry, keys: tuple[str, ...], known_source: Callable[[Any], str | None],
          ) -> tuple[str, str, dict[str, Any]] | None:
    """The optional `also` table: the same figures as the source also states them in the other unit family."""
    if "also" not in e.table:
        return None
    also = e.table["also"]
    a = _Entry(e.file, f"{e.name} also", also, e.problems)
    a.unknown_keys(("unit", "source", *keys))
    unit = a.get("unit", str, default="")
    source = a.get("source", str, required=False, check=known_source, default="")
    return unit, source, a.table


def _check_families(e: _Entry, sides: Iterable[EdgeSide | None]) -> None:
    for side in sides:
        if side is not None and len({f.family for f in side.figures}) != len(side.figures):
            e.problem(f"{side.figure}: 'also' must state the figure in the other unit family")


def _intervals(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
               known_source: Callable[[Any], str | None], figure: FigureMaker, side: SideMaker,
               origin: str) -> dict[str, tuple[Interval, ...]]:
    out: dict[str, list[Interval]] = {}
    allowed = ("analyte", "specimens", "sex", "age_from", "age_to", "age_from_included", "age_to_included",
               "ages_stated", "low", "high", "unit", "also", "source", "established", "reason",
               "adult_default", "borrowed")
    for i, table in enumerate(doc.get("interval", [])):
        e = _Entry("intervals.toml", f"interval[{i}]", table, problems)
        e.unknown_keys(allowed)
        analyte = e.get("analyte", str, check=_known(analytes, "analyte"))
        e.name = f"interval[{i}] ({analyte})"
        specimens = e.get("specimens", list, default=[])
        for s in specimens:
            if s not in SPECIMENS:
                e.problem(f"unknown specimen '{s}' (use {list(SPECIMENS)})")
        if not specimens:
            e.problem("'specimens' must name at least one specimen")
        sex = e.get("sex", str, required=False, default="any", check=_one_of(("any", *SEXES)))
        age_from, age_to, from_included, to_included, ages_stated = _age_band(e)
        established = e.get("established", bool, required=False, default=True)
        source = e.get("source", str, check=known_source, default="")
        low = high = stated_low = stated_high = None
        low_side = high_side = None
        unit = ""
        reason = ""
        if established:
            low_s, high_s = _stated(e, "low"), _stated(e, "high")
            stated_low = None if low_s is None else low_s[0]
            stated_high = None if high_s is None else high_s[0]
            unit = e.get("unit", str, default="")
            if stated_low is None and stated_high is None:
                e.problem("needs 'low', 'high' or both")
            if stated_low is not None and stated_high is not None and stated_low >= stated_high:
                e.problem("'low' must be below 'high'")
            if analyte and unit:
                also = _also(e, ("low", "high"), known_source)
                also_low = also_high = None
                if also is not None:
                    a_unit, a_source, a_table = also
                    also_low = figure("intervals.toml", e.name, analyte, _stated(e, "low", a_table), a_unit,
                                      a_source or source)
                    also_high = figure("intervals.toml", e.name, analyte, _stated(e, "high", a_table), a_unit,
                                       a_source or source)
                low_fig = figure("intervals.toml", e.name, analyte, low_s, unit, source)
                high_fig = figure("intervals.toml", e.name, analyte, high_s, unit, source)
                low = None if low_fig is None else low_fig.canonical
                high = None if high_fig is None else high_fig.canonical
                low_side = side(analyte, "interval low", "<", [low_fig, also_low])
                high_side = side(analyte, "interval high", ">", [high_fig, also_high])
                _check_families(e, (low_side, high_side))
        else:
            reason = e.get("reason", str, default="")
        item = Interval(analyte or "", tuple(specimens), sex, age_from, age_to, low, high,
                        unit, stated_low, stated_high, source, established, reason,
                        e.get("adult_default", bool, required=False, default=False), origin, e.name,
                        from_included, to_included, ages_stated, low_side, high_side,
                        e.get("borrowed", str, required=False, default=""))
        for other in out.get(item.analyte, []):
            if (set(other.specimens) & set(item.specimens) and other.sex in ("any", item.sex, )
                    and _bands_overlap(other, item)):
                e.problem(f"overlaps {other.entry} for the same specimen and sex")
            elif (set(other.specimens) & set(item.specimens) and other.sex in ("any", item.sex)
                  and _edge_gap(other, item)):
                e.problem(f"the age at its shared edge with {other.entry} belongs to neither band")
        out.setdefault(item.analyte, []).append(item)
    return {k: tuple(v) for k, v in out.items()}


def _edge_gap(a: Any, b: Any) -> bool:
    """Two bands that meet at one age which neither includes: that exact age would have no band."""
    return ((a.age_to == b.age_from and not a.age_to_included and not b.age_from_included)
            or (b.age_to == a.age_from and not b.age_to_included and not a.age_from_included))


def _overlay_intervals(base: dict[str, tuple[Interval, ...]], lab: dict[str, tuple[Interval, ...]],
                       ) -> dict[str, tuple[Interval, ...]]:
    """A laboratory's intervals replace the defaults for each (analyte, specimen) they cover."""
    merged = dict(base)
    for analyte, rules in lab.items():
        covered = {s for r in rules for s in r.specimens}
        kept = tuple(
            dataclasses.replace(r, specimens=tuple(s for s in r.specimens if s not in covered))
            for r in base.get(analyte, ()) if set(r.specimens) - covered
        )
        merged[analyte] = rules + kept
    return merged


def _limits(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
            known_source: Callable[[Any], str | None], figure: FigureMaker, side: SideMaker,
            convert: Callable[..., float | None], origin: str, require_all: bool,
            ) -> tuple[dict[str, tuple[Critical, ...]], dict[str, Implausible]]:
    critical: dict[str, list[Critical]] = {}
    allowed = ("analyte", "age_from", "age_to", "age_from_included", "age_to_included", "ages_stated",
               "low", "low_comparison", "high", "high_comparison", "unit", "also", "source",
               "low_missing_reason", "high_missing_reason", "note", "comparison_note")
    for i, table in enumerate(doc.get("critical", [])):
        e = _Entry("limits.toml", f"critical[{i}]", table, problems)
        e.unknown_keys(allowed)
        analyte = e.get("analyte", str, check=_known(analytes, "analyte")) or ""
        e.name = f"critical[{i}] ({analyte})"
        age_from, age_to, from_included, to_included, ages_stated = _age_band(e)
        unit = e.get("unit", str, default="")
        source = e.get("source", str, check=known_source, default="")
        low_s, high_s = _stated(e, "low"), _stated(e, "high")
        stated_low = None if low_s is None else low_s[0]
        stated_high = None if high_s is None else high_s[0]
        low_cmp = e.get("low_comparison", str, required=stated_low is not None, default="<=",
                        check=_one_of(LOW_COMPARISONS))
        high_cmp = e.get("high_comparison", str, required=stated_high is not None, default=">=",
                         check=_one_of(HIGH_COMPARISONS))
        low_reason = e.get("low_missing_reason", str, required=stated_low is None, default="")
        high_reason = e.get("high_missing_reason", str, required=stated_high is None, default="")
        if stated_low is not None and stated_high is not None and stated_low >= stated_high:
            e.problem("'low' must be below 'high'")
        low_fig = figure("limits.toml", e.name, analyte, low_s, unit, source) if analyte else None
        high_fig = figure("limits.toml", e.name, analyte, high_s, unit, source) if analyte else None
        also = _also(e, ("low", "high"), known_source)
        also_low = also_high = None
        if also is not None and analyte:
            a_unit, a_source, a_table = also
            also_low = figure("limits.toml", e.name, analyte, _stated(e, "low", a_table), a_unit, a_source or source)
            also_high = figure("limits.toml", e.name, analyte, _stated(e, "high", a_table), a_unit,
                               a_source or source)
            if (also_low is None) != (low_fig is None) or (also_high is None) != (high_fig is None):
                e.problem("'also' must state the same sides as the entry")
        low_side = side(analyte, "critical low", low_cmp, [low_fig, also_low]) if analyte else None
        high_side = side(analyte, "critical high", high_cmp, [high_fig, also_high]) if analyte else None
        _check_families(e, (low_side, high_side))
        item = Critical(analyte, age_from, age_to,
                        None if low_fig is None else low_fig.canonical, low_cmp == "<=",
                        None if high_fig is None else high_fig.canonical, high_cmp == ">=",
                        unit, stated_low, stated_high, low_reason, high_reason, source, origin,
                        from_included, to_included, ages_stated, low_side, high_side,
                        e.get("note", str, required=False, default=""),
                        e.get("comparison_note", str, required=False, default=""))
        for other in critical.get(analyte, []):
            if _bands_overlap(other, item):
                e.problem("overlaps another critical entry's age band")
            elif _edge_gap(other, item):
                e.problem("the age at its shared edge with another critical entry belongs to neither band")
        critical.setdefault(analyte, []).append(item)
    implausible: dict[str, Implausible] = {}
    for i, table in enumerate(doc.get("implausible", [])):
        e = _Entry("limits.toml", f"implausible[{i}]", table, problems)
        e.unknown_keys(("analyte", "low", "high", "unit", "source", "reasoning"))
        analyte = e.get("analyte", str, check=_known(analytes, "analyte")) or ""
        e.name = f"implausible[{i}] ({analyte})"
        unit = e.get("unit", str, default="")
        stated_low = e.get("low", float, required=False)
        stated_high = e.get("high", float, required=False)
        if analyte in implausible:
            e.problem("a second implausible entry for the same analyte")
        implausible[analyte] = Implausible(
            analyte, convert("limits.toml", e.name, analyte, stated_low, unit),
            convert("limits.toml", e.name, analyte, stated_high, unit), unit, stated_low, stated_high,
            e.get("reasoning", str, default=""), e.get("source", str, check=known_source, default=""))
    for analyte, limits in implausible.items():
        for rule in critical.get(analyte, []):
            if limits.low is not None and rule.low is not None and limits.low >= rule.low:
                problems.add("limits.toml", f"implausible ({analyte})", "low must lie below the critical low")
            if limits.high is not None and rule.high is not None and limits.high <= rule.high:
                problems.add("limits.toml", f"implausible ({analyte})", "high must lie above the critical high")
    if require_all:
        for analyte in analytes.values():
            if not analyte.derived and analyte.id not in implausible:
                problems.add("limits.toml", analyte.id, "no implausible limits for this analyte")
    return {k: tuple(v) for k, v in critical.items()}, implausible


def _check_limits_outside_intervals(intervals: dict[str, tuple[Interval, ...]],
                                    critical: dict[str, tuple[Critical, ...]],
                                    problems: _Problems) -> None:
    """A critical limit must lie outside every interval it goes with, for every age band and unit family."""
    for analyte, rules in critical.items():
        for limit in rules:
            for interval in intervals.get(analyte, ()):
                if not interval.established or not _bands_overlap(limit, interval):
                    continue
                where = f"critical ({analyte}, {limit.describe()}) vs {interval.entry}"
                for family in FAMILIES:
                    if _limit_reaches_inside(limit.low_edge(family), interval.low_edge(family), low=True):
                        problems.add("limits.toml", where, f"critical low is not below the interval ({family})")
                    if _limit_reaches_inside(limit.high_edge(family), interval.high_edge(family), low=False):
                        problems.add("limits.toml", where, f"critical high is not above the interval ({family})")


def _limit_reaches_inside(critical: ComparisonEdge | None, bound: ComparisonEdge | None, low: bool) -> bool:
    """Whether some value is both critical and inside the interval (not beyond its bound).

    Low side: critical when v < c (or <=), inside when v >= b (or > b); they share a value unless
    c lies below b, or at b with one of the two comparisons strict. The high side mirrors it."""
    if critical is None or bound is None:
        return False
    c, b = critical.value, bound.value
    if low:
        return c > b or (c == b and critical.inclusive and not bound.inclusive)
    return c < b or (c == b and critical.inclusive and not bound.inclusive)


def _check_adult_defaults(intervals: dict[str, tuple[Interval, ...]], problems: _Problems) -> None:
    for analyte, rules in intervals.items():
        for specimen in SPECIMENS:
            marked = [r for r in rules if r.adult_default and specimen in r.specimens]
            if len(marked) > 1:
                problems.add("intervals.toml", f"{analyte}, {specimen}",
                             "more than one interval is marked adult_default")


def _ctcae(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
           known_source: Callable[[Any], str | None], figure: FigureMaker, side: SideMaker,
           ) -> dict[tuple[str, str], CtcaeTerm]:
    out: dict[tuple[str, str], CtcaeTerm] = {}
    for i, table in enumerate(doc.get("term", [])):
        e = _Entry("ctcae.toml", f"term[{i}]", table, problems)
        e.unknown_keys(("term", "direction", "graded_analytes", "unit", "edges", "also", "note", "source"))
        term = e.get("term", str, default="")
        e.name = f"term[{i}] ({term})"
        direction = e.get("direction", str, check=_one_of(("low", "high")), default="low")
        unit = e.get("unit", str, default="")
        source = e.get("source", str, check=known_source, default="")
        raw = e.get("edges", list, default=[])
        stated = [_parse_stated(e, "edges", x) for x in raw]
        if len(stated) != 3 or any(x is None for x in stated):
            e.problem("'edges' must be three numbers (grades 2, 3, 4)")
            continue
        values = [x[0] for x in stated]  # type: ignore[index]
        if values != sorted(values, reverse=direction == "low"):
            e.problem("'edges' must move away from normal grade by grade")
        also = _also(e, ("edges",), known_source)
        also_stated: list[Stated | None] = [None, None, None]
        a_unit, a_source = "", source
        if also is not None:
            a_unit, a_source_given, a_table = also
            a_source = a_source_given or source
            a_raw = a_table.get("edges", [])
            if not isinstance(a_raw, list) or len(a_raw) != 3:
                e.problem("'also.edges' must be three entries (grades 2, 3, 4; \"\" where CTCAE prints none)")
            else:
                also_stated = [None if x == "" else _parse_stated(e, "also.edges", x) for x in a_raw]
        beyond = "<" if direction == "low" else ">"
        for analyte in e.get("graded_analytes", list, default=[]):
            if analyte not in analytes:
                e.problem(f"unknown analyte '{analyte}'")
                continue
            sides = []
            for grade, (primary, other) in enumerate(zip(stated, also_stated, strict=True), start=2):
                figs = [figure("ctcae.toml", e.name, analyte, primary, unit, source)]
                if other is not None:
                    figs.append(figure("ctcae.toml", e.name, analyte, other, a_unit, a_source))
                sides.append(side(analyte, f"CTCAE grade {grade} edge", beyond, figs))
            _check_families(e, sides)
            edges = tuple(math.nan if s is None else s.figures[0].canonical for s in sides)
            if (analyte, direction) in out:
                e.problem(f"a second {direction} term for {analyte}")
            out[(analyte, direction)] = CtcaeTerm(
                term, direction, analyte, unit, tuple(values),  # type: ignore[arg-type]
                edges, e.get("note", str, required=False, default=""),  # type: ignore[arg-type]
                source, tuple(sides))  # type: ignore[arg-type]
    return out


def _symptoms(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
              known_source: Callable[[Any], str | None],
              ) -> tuple[dict[str, tuple[Symptom, ...]], dict[str, tuple[Symptom, ...]], dict[str, str]]:
    conditions = {a.condition_low for a in analytes.values()} | {a.condition_high for a in analytes.values()}
    symptoms: dict[str, list[Symptom]] = {}
    notes: dict[str, list[Symptom]] = {}
    for kind, target in (("symptom", symptoms), ("note", notes)):
        for i, table in enumerate(doc.get(kind, [])):
            e = _Entry("symptoms.toml", f"{kind}[{i}]", table, problems)
            e.unknown_keys(("condition", "system", "text", "source", "row"))
            condition = e.get("condition", str, check=_known(conditions, "condition"), default="")
            system = e.get("system", str, required=kind == "symptom", default="other",
                           check=_one_of(SYSTEMS))
            target.setdefault(condition, []).append(Symptom(
                condition, system, e.get("text", str, default=""),
                e.get("source", str, check=known_source, default=""), e.get("row", str, default="")))
    coverage: dict[str, str] = {}
    for i, table in enumerate(doc.get("coverage", [])):
        e = _Entry("symptoms.toml", f"coverage[{i}]", table, problems)
        e.unknown_keys(("condition", "text"))
        coverage[e.get("condition", str, check=_known(conditions, "condition"), default="")] = \
            e.get("text", str, default="")
    for condition in sorted(conditions):
        if condition not in symptoms and condition not in coverage:
            problems.add("symptoms.toml", condition,
                         "has neither symptoms nor a coverage entry saying the sources are silent")
    return ({k: tuple(v) for k, v in symptoms.items()}, {k: tuple(v) for k, v in notes.items()},
            coverage)


def _patterns(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
              known_source: Callable[[Any], str | None]) -> tuple[Pattern, ...]:
    out = []
    for i, table in enumerate(doc.get("pattern", [])):
        e = _Entry("patterns.toml", f"pattern[{i}]", table, problems)
        e.unknown_keys(("id", "title", "text", "requires", "source"))
        requires = []
        for j, req in enumerate(e.get("requires", list, default=[])):
            r = _Entry("patterns.toml", f"pattern[{i}] requires[{j}]", req, problems)
            r.unknown_keys(("any_of", "classification"))
            any_of = r.get("any_of", list, default=[])
            for a in any_of:
                if a not in analytes:
                    r.problem(f"unknown analyte '{a}'")
            requires.append(PatternRequirement(tuple(any_of), r.get(
                "classification", str, check=_one_of(("hypo", "normal", "hyper")), default="hypo")))
        out.append(Pattern(e.get("id", str, default=""), e.get("title", str, default=""),
                           e.get("text", str, default=""), tuple(requires),
                           e.get("source", str, check=known_source, default="")))
    return tuple(out)


def _corrected(doc: dict[str, Any], problems: _Problems, analytes: dict[str, Analyte],
               known_source: Callable[[Any], str | None], exact: dict[str, str]) -> CorrectedCalcium:
    e = _Entry("corrected_calcium.toml", "top level", doc, problems)
    e.unknown_keys(("formula", "slope", "reference_albumin", "calcium_unit", "albumin_unit",
                    "interval_analyte", "source", "limitations", "limitations_source", "slope_sources",
                    "original_source", "applies_age_from", "applies_albumin", "applies_reasoning"))
    unit_known = _known(exact, "unit")
    slope_sources = e.get("slope_sources", list, required=False, default=[])
    for sid in slope_sources:
        if known_source(sid):
            e.problem(f"'slope_sources' names an unknown source '{sid}'")
    age_text = e.get("applies_age_from", str, required=False, default="0d")
    age_from = parse_age(age_text)
    if age_from is None:
        e.problem("'applies_age_from' must be written like '18y'")
        age_from = 0.0
    return CorrectedCalcium(
        e.get("formula", str, default=""), e.get("slope", float, default=0.0),
        e.get("reference_albumin", float, default=0.0),
        e.get("calcium_unit", str, check=unit_known, default="mg/dL"),
        e.get("albumin_unit", str, check=unit_known, default="g/dL"),
        e.get("interval_analyte", str, check=_known(analytes, "analyte"), default="calcium"),
        e.get("source", str, check=known_source, default=""),
        e.get("limitations", str, default=""),
        e.get("limitations_source", str, check=known_source, default=""),
        tuple(slope_sources),
        e.get("original_source", str, required=False, check=known_source, default=""),
        age_from,
        e.get("applies_albumin", str, required=False, default="any",
              check=_one_of(("any", "below_interval"))),
        e.get("applies_reasoning", str, required=False, default=""))


# The refusal reasons the engine writes, with the fields each may use (filled in by the engine).
REFUSAL_FIELDS: dict[str, tuple[str, ...]] = {
    "unknown_lab": ("lab", "known"), "invalid_choice": ("choices",), "invalid_age": (), "no_results": (),
    "unknown_local_code_in_profile": ("code", "system", "lab"), "unknown_local_code_no_profile": ("code", "system"),
    "unknown_loinc": ("code", "known"), "unknown_analyte": ("analyte", "names", "known", "also"),
    "also_local_codes": ("local",), "value_text": ("value",), "not_finite": (), "negative": (),
    "specimen_conflict": ("code", "specimen", "sent"), "code_label_loinc": ("code",),
    "code_label_local": ("system", "code"), "missing_unit": (),
    "wrong_dimension": ("unit", "kind", "analyte", "accepted"),
    "unknown_unit": ("unit", "analyte", "accepted"), "incompatible_unit": ("ucum", "analyte", "why", "accepted"),
    "no_molar_mass": (), "no_valence": (), "bound_invalid": (), "empty_interval": (), "inverted_interval": (),
    "unknown_previous_analyte": (),
    # a CSV row's error (the file path)
    "row_line": ("line", "reasons"), "row_field": ("field", "reason"), "row_not_interpreted": (),
    "row_no_specimen_id": (), "row_patient_differs": ("line",), "row_both_ages": (), "row_sex": ("choices",),
    "row_not_a_number": ("name",), "row_age_range": ("name", "limit"), "row_range_title": (),
    # a verified file's columns
    "row_patient_id_differs": ("line",), "not_a_date_time": (), "comparator_conflict": (),
}


# The phrases the domain puts into answers, with the fields each may use.
PHRASE_FIELDS: dict[str, tuple[str, ...]] = {
    "age_birth": (), "age_years": ("count",), "age_days": ("count",), "band_from": ("start",),
    "band_over": ("start",), "band_from_to": ("start", "end"), "band_from_to_under": ("start", "end"),
    "band_over_to": ("start", "end"), "band_over_to_under": ("start", "end"),
    "applies_to": ("ages", "specimens"), "applies_to_sex": ("ages", "sex", "specimens"),
    "no_adult_interval": ("analyte", "specimen"), "no_interval_at_age": ("analyte", "specimen", "age"),
}


def _words(doc: dict[str, Any], problems: _Problems) -> dict[str, str]:
    """[refusal], [phrase] and [dimension]: every key the engine uses, each text using only the fields it is
    given."""
    out: dict[str, str] = {}
    for table, wanted in (("refusal", REFUSAL_FIELDS), ("phrase", PHRASE_FIELDS),
                          ("dimension", {kind: () for kind in DIMENSION_KINDS})):
        given = doc.get(table, {})
        e = _Entry("messages.toml", table, given, problems)
        e.unknown_keys(tuple(wanted))
        for key, fields in wanted.items():
            text = e.get(key, str)
            if isinstance(text, str) and template_fits(e, key, text, fields):
                out[f"{table}.{key}"] = text
    return out


def template_fits(e: _Entry, key: str, text: str, fields: tuple[str, ...]) -> bool:
    """Whether a text's `{...}` fields are balanced and among those it is given (else the entry's problem)."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        e.problem(f"'{key}': unbalanced braces")
        return False
    if not used <= set(fields):
        e.problem(f"'{key}' uses {sorted(used - set(fields))}; it may use {sorted(fields) or 'no fields'}")
        return False
    return True


def _messages(doc: dict[str, Any], problems: _Problems, known_source: Callable[[Any], str | None],
              ) -> tuple[dict[str, dict[str, str]], dict[str, Caveat]]:
    out: dict[str, dict[str, str]] = {}
    for code, table in doc.get("warning", {}).items():
        e = _Entry("messages.toml", f"warning.{code}", table, problems)
        e.unknown_keys(("text", "source"))
        out[code] = {"text": e.get("text", str, default="")}
        source = e.get("source", str, required=False, check=known_source)
        if source:
            out[code]["source"] = source
    caveats: dict[str, Caveat] = {}
    for code, table in doc.get("caveat", {}).items():
        e = _Entry("messages.toml", f"caveat.{code}", table, problems)
        e.unknown_keys(("text", "source", "sex", "age_from", "age_to", "age_from_included", "age_to_included",
                        "ages_stated", "reasoning"))
        if code in out:
            e.problem("a caveat and a warning share this code")
        age_from, age_to, from_included, to_included, ages_stated = _age_band(e)
        caveat = Caveat(code, e.get("text", str, default=""), e.get("source", str, check=known_source, default=""),
                        e.get("sex", str, required=False, default="any", check=_one_of(("any", *SEXES))),
                        age_from, age_to, from_included, to_included, ages_stated,
                        e.get("reasoning", str, default=""))
        caveats[code] = caveat
        out[code] = {"text": caveat.text, "source": caveat.source}
    return out, caveats
