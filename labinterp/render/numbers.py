"""The one number formatter: how labinterp writes a number in text, FHIR and files."""

from __future__ import annotations

import math


def sig(value: float, digits: int = 4) -> float:
    """Round for display only (classification used the unrounded value)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def general(value: float | None, missing: str = "-") -> str:
    """A stated figure as written in a sentence (shortest %g form)."""
    return missing if value is None else f"{value:g}"


def four(value: float | None, missing: str = "none") -> str:
    """A computed figure in a sentence, to four significant digits."""
    return missing if value is None else f"{value:.4g}"


def rounded(value: float | None, missing: str = "none") -> str:
    """A computed figure rounded to four significant digits, then written shortest."""
    return missing if value is None else f"{sig(value):g}"


def exact(value: float) -> str:
    """A value in a file: the shortest text that reads back to the same float ("" for none)."""
    return "" if value != value else repr(value)
