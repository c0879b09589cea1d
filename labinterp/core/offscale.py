"""Off-scale result text as laboratories write it ("<0.5", ">= 10", "LESS THAN 1.0"): comparator and number."""

from __future__ import annotations

import re

# The number part is left to the caller's number parser; only its characters are checked here, so
# that "<" followed by words ("< UNABLE TO REPORT") is never taken for an off-scale result.
_SYMBOL = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*$")
_WORDS = re.compile(r"^\s*(LESS|GREATER)\s*THAN\s*([0-9.eE+-]+)\s*$", re.IGNORECASE)
_WORD_COMPARATOR = {"LESS": "<", "GREATER": ">"}


def split_comparator(text: str) -> tuple[str | None, str]:
    """(comparator, number text) for "<x", "<=x", ">x", ">=x", "LESS THAN x", "GREATER THAN x" (any case,
    optional spaces); (None, text) for anything else, which the caller reads as a plain number or refuses."""
    match = _SYMBOL.match(text)
    if match:
        return match.group(1), match.group(2)
    match = _WORDS.match(text)
    if match:
        return _WORD_COMPARATOR[match.group(1).upper()], match.group(2)
    return None, text
