"""The patient of a panel, read the same way by every door: age in days or years, and sex."""

from __future__ import annotations

import math
from collections.abc import Mapping

from labinterp.core.model import SEXES, Patient
from labinterp.core.numbers import read_number

DAYS_PER_YEAR = 365.25
MAX_AGE_YEARS = 150.0
MAX_AGE_DAYS = MAX_AGE_YEARS * DAYS_PER_YEAR
# HL7 v2 administrative sex (table 0001) in the service's words; A (ambiguous) and N (not applicable)
# have no interval of their own, as "other" and "unknown" have none.
HL7_SEX = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
_SEX_SPELLINGS = {**{s: s for s in SEXES}, **{code.lower(): sex for code, sex in HL7_SEX.items()}}
SEX_CHOICES = f"one of {list(SEXES)} (or the HL7 codes {', '.join(HL7_SEX)})"


def sex_of(text: str) -> str | None:
    """The service's sex for a spelling (its own words or an HL7 code, any case), or None."""
    return _SEX_SPELLINGS.get(text.strip().lower())


def patient(age_years: float | None = None, age_days: float | None = None, sex: str | None = None) -> Patient:
    """A patient from an age given in years or in days (days win: they are the precise form)."""
    if age_days is not None:
        return Patient(age_days=age_days, sex=sex)
    if age_years is not None:
        return Patient(age_days=age_years * DAYS_PER_YEAR, age_given_in_years=True, sex=sex)
    return Patient(sex=sex)


def patient_of_columns(words: Mapping[str, str], age_years: str, age_days: str, sex: str) -> tuple[Patient, list[str]]:
    """A file's patient columns (age_years, age_days, sex as written) read as every file door reads them: the
    patient, and the problems in the data's words (an empty list: none). A column in error is left out."""
    problems: list[str] = []
    years = _age(words, age_years, "age_years", MAX_AGE_YEARS, problems)
    days = _age(words, age_days, "age_days", MAX_AGE_DAYS, problems)
    if years is not None and days is not None:
        problems.append(words["refusal.row_both_ages"])
    sex_code = None
    if sex.strip():
        sex_code = sex_of(sex)
        if sex_code is None:
            problems.append(words["refusal.row_sex"].format(choices=SEX_CHOICES))
    return patient(years, days, sex_code), problems


def _age(words: Mapping[str, str], text: str, name: str, limit: float, problems: list[str]) -> float | None:
    text = text.strip()
    if not text:
        return None
    value = read_number(text)
    if value is None:
        problems.append(words["refusal.row_not_a_number"].format(name=name))
        return None
    if not math.isfinite(value) or value < 0 or value > limit:
        problems.append(words["refusal.row_age_range"].format(name=name, limit=f"{limit:g}"))
        return None
    return value
