"""Typed outcomes of the engine: what it decided, with the rule objects that decided it (no sentences)."""

from __future__ import annotations

from labinterp.core.frozen import frozen
from labinterp.core.knowledge import (
    Caveat,
    ComparisonEdge,
    CorrectedCalcium,
    Critical,
    CtcaeTerm,
    Implausible,
    Interval,
    Knowledge,
    Pattern,
)
from labinterp.core.model import SentInterval

CLASSIFICATIONS = ("indeterminate", "hypo", "normal", "hyper")
FLAGS = (None, "LL", "L", "N", "H", "HH")
REASONS = (None, "implausible", "no_interval", "off_scale")


@frozen
class Note:
    """A warning as a code (its text lives in the data, messages.toml) and the parameters it needs
    that the outcome does not already carry (which side, which grade)."""

    code: str
    side: str | None = None


@frozen
class CodeRead:
    """The code a result was sent with and what it was taken to mean (None on a result sent by name)."""

    system: str | None  # as sent (None: no system given)
    code: str
    origin: str  # "loinc" (analytes.toml) or "laboratory" (the profile's codes.toml)
    analyte: str
    property: str | None  # mass | molar, as LOINC defines the code
    specimen: str | None  # the specimen the code implies (None: not implied)
    display: str | None
    unit: str | None = None  # the unit the profile assumes when the result carries none


@frozen
class SentRange:
    """A laboratory's interval sent with the result: as stated, and in the canonical unit."""

    low: float | None
    high: float | None
    stated: SentInterval
    unit: str  # the unit the bounds were stated in (the result's own when the range names none)
    ucum: str  # ... as its UCUM code
    completed_from: Interval | None = None  # the service's interval that gave the bound the sender left out


@frozen
class Verdict:
    """The classification of one value: codes index CLASSIFICATIONS, FLAGS and REASONS."""

    classification: str
    flag: str | None
    critical: bool
    reason: str | None
    grade: int  # CTCAE grade, 0 = none


@frozen
class Outcome:
    """One interpreted result (or the derived corrected calcium) and the basis of its verdict."""

    index: int | None
    id: str | None
    analyte: str
    loinc: str
    input_value: float
    input_unit: str
    ucum: str
    factor: float
    value: float
    comparator: str | None
    specimen: str
    hemolysis: str | None
    interval: Interval | None
    sent: SentRange | None
    interval_reason: str | None
    critical_rule: Critical | None
    implausible_rule: Implausible | None
    ctcae_term: CtcaeTerm | None
    verdict: Verdict
    notes: tuple[Note, ...]
    compared: tuple[ComparisonEdge, ...] = ()  # the data's edges the value was compared with
    symptoms_from: str | None = None  # another classification whose symptoms apply (corrected calcium's)
    code: CodeRead | None = None


@frozen
class Member:
    """A result taking part in a pattern (index None: the derived corrected calcium)."""

    index: int | None
    id: str | None
    analyte: str
    flag: str | None


@frozen
class PatternHit:
    pattern: Pattern
    members: tuple[Member, ...]


@frozen
class Derived:
    """Albumin-corrected calcium, derived from the panel's first calcium and first albumin."""

    outcome: Outcome
    formula: CorrectedCalcium
    calcium: Member
    albumin: Member


@frozen
class PanelOutcome:
    """The interpretation of one panel, against the knowledge (default data or a profile) it used."""

    results: tuple[Outcome, ...]
    derived: tuple[Derived, ...]
    patterns: tuple[PatternHit, ...]
    knowledge: Knowledge
    caveats: tuple[Caveat, ...] = ()
