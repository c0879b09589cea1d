"""Numbers as a laboratory system writes them: plain decimals and the off-scale forms, nothing else."""

from __future__ import annotations

import re
from collections.abc import Iterable

from labinterp.core.offscale import split_comparator

# HL7 v2's NM type: an optional sign, ASCII digits and at most one decimal point; no exponent.
# float() also takes '1_000', '1e3', 'inf', 'nan' and every script's digits ('\u0664', '\uff14'):
# a laboratory system writes none of them, and '1_2.3_4' read as 12.34 is a silent guess.
# The sign is read so that '-1' is refused as negative (the engine's reason), not as unreadable.
_DECIMAL = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN = re.compile(rf"[ \t]*({_DECIMAL})[ \t]*")
# A text made of these characters only is read by float() exactly as by _PLAIN (or refused by both).
_NOT_PLAIN = re.compile(r"[^0-9.+\- \t]")


def read_number(text: str) -> float | None:
    """A plain decimal ('4.25', '12', '.5', '4.', ' 4 ', '-1'), or None."""
    match = _PLAIN.fullmatch(text)
    return float(match.group(1)) if match else None


def read_result(text: str) -> tuple[float, str | None] | None:
    """A plain decimal, or an off-scale one ('<0.5', '>= 7', 'LESS THAN 1.0'), with its comparator; or None.
    The off-scale forms are recognised by core/offscale.py, the number by read_number: each rule once."""
    comparator, number_text = split_comparator(text)
    number = read_number(number_text)
    return None if number is None else (number, comparator)


def all_plain_characters(texts: Iterable[str]) -> bool:
    """Whether every text holds only digits, '.', signs, spaces and tabs: then float() reads each
    exactly as read_number does (and refuses the same), at C speed."""
    return _NOT_PLAIN.search("".join(texts)) is None
