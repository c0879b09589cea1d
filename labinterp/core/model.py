"""Inputs of the engine, as frozen dataclasses built by every door."""

from __future__ import annotations

from dataclasses import field

from labinterp.core.frozen import frozen

SPECIMENS = ("serum", "plasma", "whole_blood")
SEXES = ("female", "male", "other", "unknown")
# degree_not_stated: haemolysis reported without a degree (FHIR Specimen.condition v2-0493 HEM)
HEMOLYSIS = ("none", "slight", "moderate", "gross", "degree_not_stated")
COMPARATORS = ("<", "<=", ">", ">=")
# a comparator as the array rules code it (classify_columns, the file path, verification): 0 none, then in the
# order of COMPARATORS (1 <, 2 <=, 3 >, 4 >=)
COMPARATOR_CODES: dict[str | None, int] = {None: 0, **{c: code for code, c in enumerate(COMPARATORS, 1)}}


@frozen
class SentInterval:
    """A laboratory's own reference interval sent with the result (inclusive bounds)."""

    low: float | None
    high: float | None
    unit: str | None = None
    text: str | None = None


@frozen
class ResultInput:
    analyte: str
    value: float
    unit: str
    id: str | None = None
    comparator: str | None = None
    specimen: str | None = None
    hemolysis: str | None = None
    reference_interval: SentInterval | None = None
    # The coding system `analyte` is a code of (a FHIR Coding.system, an HL7 OBX-3.3/3.6): LOINC or a
    # laboratory profile's codes.toml. None: a name, a LOINC code, or a profile's code whose system is unique.
    code_system: str | None = None


@frozen
class Patient:
    age_days: float | None = None
    age_given_in_years: bool = False
    sex: str | None = None


@frozen
class Panel:
    results: tuple[ResultInput, ...]
    patient: Patient | None = None
    specimen: str | None = None
    lab: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)
