"""Outcomes of the file path -> the text of the columns a CSV row gets appended (one formatter for numbers)."""

from __future__ import annotations

from labinterp.core.columnar import RowVerdict
from labinterp.render.numbers import exact

OUTPUT_COLUMNS = ("canonical_value", "canonical_unit", "interval_low", "interval_high", "classification",
                  "flag", "critical", "ctcae_grade", "warnings", "error", "interval_origin", "interval_source")
BEFORE_ERROR = OUTPUT_COLUMNS.index("error") - 1  # verdict fields between canonical_value and error
WARNING_SEPARATOR = "|"
MAX_TEXTS = 50_000  # shortest texts of values kept for reuse
UNCACHED_CHUNKS = 16  # chunks that skip the text cache after one whose values were mostly new


def fields(v: RowVerdict | None) -> tuple[str, ...]:
    """The appended columns but canonical_value and error, in OUTPUT_COLUMNS order (None: a refused row)."""
    if v is None:
        return ("",) * (len(OUTPUT_COLUMNS) - 2)
    return (
        v.canonical_unit,
        exact(v.low) if v.has_interval else "",
        exact(v.high) if v.has_interval else "",
        v.classification,
        v.flag or "",
        "true" if v.critical else "false",
        "" if v.grade == 0 else str(v.grade),
        WARNING_SEPARATOR.join(v.notes),
        v.origin if v.has_interval else "",
        v.source if v.has_interval else "",
    )


class ValueTexts:
    """Shortest round-trip text of each value (NaN, no value: ""), through a cache while values repeat;
    after a chunk of mostly new values, the next ones skip it (a miss costs more than repr)."""

    def __init__(self) -> None:
        self._text_of = _TextOf()
        self.uncached_chunks = 0

    def __call__(self, values: list[float]) -> list[str]:
        if self.uncached_chunks:
            self.uncached_chunks -= 1
            texts = list(map(repr, values))
            if values and values[-1] != values[-1]:  # np.unique puts its one NaN last
                texts[-1] = ""
            return texts
        if len(self._text_of) > MAX_TEXTS:
            self._text_of.clear()
        misses = self._text_of.misses
        texts = list(map(self._text_of.__getitem__, values))
        if self._text_of.misses - misses > 0.75 * len(values) and len(self._text_of) > MAX_TEXTS // 2:
            self.uncached_chunks = UNCACHED_CHUNKS  # judged on a cache that has seen enough values
        return texts


class _TextOf(dict):  # type: ignore[type-arg]
    """Shortest round-trip text of a float, each computed once; NaN (no value) is an empty string
    (and not kept: every NaN object is a new key)."""

    misses = 0

    def __missing__(self, value: float) -> str:
        self.misses += 1
        if value != value:
            return ""
        text = self[value] = exact(value)
        return text
