"""Unit spellings and conversion factors, derived once with pint at load time.

pint is used only here, only while data loads: it derives one float factor per
(analyte, unit) into the analyte's canonical unit, from the SI definitions in
concentration_units.txt (parsed in milliseconds; pint's default registry of every unit takes
about 0.3 s). Requests multiply by that factor and never touch pint (its context conversions
are slow and not thread-safe). An error message about a refused unit looks its text up in a
table of every unit spelling pint's default registry knows, built once at start-up.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, cast

import pint

MICRO_SIGNS = str.maketrans({"\u00b5": "u", "\u03bc": "u"})
DEFINITIONS = Path(__file__).with_name("concentration_units.txt")
_registry: pint.UnitRegistry[Any] | None = None
_dimensions: dict[str, str] | None = None
_registry_lock = threading.Lock()
_LONGEST_SPELLING = 64  # longer than any unit name pint knows, with its prefix


def registry() -> pint.UnitRegistry[Any]:
    """The registry factors are derived with (concentration_units.txt), built on first use under a lock."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = pint.UnitRegistry(str(DEFINITIONS))
        return _registry


def fold_spelling(text: str) -> str:
    """Fold a unit spelling for lookup: micro signs to 'u', spaces removed."""
    return text.translate(MICRO_SIGNS).replace(" ", "")


def mass_or_molar_factor(pint_expr: str, kind: str, canonical: str,
                         molar_mass: float | None, valence: int | None) -> float | None:
    """Factor that turns one `pint_expr` of an analyte into its canonical unit.

    Mass and molar units bridge through the molar mass; equivalents are moles of charge,
    so one milliequivalent is 1/valence millimole. None when the analyte lacks what the
    conversion needs (no molar mass, no valence).
    """
    ureg = registry()
    with _registry_lock:
        source = ureg.Quantity(1.0, pint_expr)
        target = ureg.Unit(canonical)
        target_is_mass = target.dimensionality == ureg.Unit("g/L").dimensionality
        if kind == "equivalent":
            if not valence:
                return None
            source = source / valence
            kind = "molar"
        if kind == "mass" and not target_is_mass:
            if not molar_mass:
                return None
            source = source / ureg.Quantity(molar_mass, "g/mol")
        elif kind == "molar" and target_is_mass:
            if not molar_mass:
                return None
            source = source * ureg.Quantity(molar_mass, "g/mol")
        return float(source.to(target).magnitude)


def dimension_table() -> dict[str, str]:
    """Every single-unit spelling pint's default registry knows (name, symbol or alias, with each
    prefix, and plural names), mapped to the kind of quantity it is, for error messages.

    Built once, at start-up (create_app), then pint's default registry is dropped: a request only
    looks its text up here, so no unit text ever reaches pint's parser while a worker serves.
    Concentrations are left out on purpose: an unlisted concentration spelling is an "unknown unit".
    """
    global _dimensions
    with _registry_lock:
        if _dimensions is None:
            _dimensions = _build_dimension_table()
        return _dimensions


def _dimensionality(ureg: pint.UnitRegistry[Any], name: str) -> tuple[tuple[str, float], ...] | None:
    try:
        dims = ureg._get_dimensionality(ureg.UnitsContainer({name: 1}))
    except Exception:  # noqa: BLE001 - a definition pint cannot reduce is simply not described
        return None
    return tuple(sorted((str(k), cast(float, v)) for k, v in dict(dims).items()))


def _build_dimension_table() -> dict[str, str]:
    ureg: pint.UnitRegistry[Any] = pint.UnitRegistry()
    kinds: dict[str, str | None] = {}  # unit definition name -> phrase (None: a concentration)
    for definition in {id(d): d for d in ureg._units.values()}.values():
        dims = _dimensionality(ureg, definition.name)
        if dims is not None:
            kinds[definition.name] = _phrase(dims)
    prefix_names = {p.name for p in ureg._prefixes.values()}
    prefix_symbols = {s for p in ureg._prefixes.values() for s in (p.symbol, *p.aliases)} - {"", None}
    table: dict[str, str] = {}

    def add(spelling: str, phrase: str) -> None:
        table.setdefault(fold_spelling(spelling), sys.intern(phrase))

    spellings = []
    for definition in {id(d): d for d in ureg._units.values()}.values():
        phrase = kinds.get(definition.name)
        if phrase is not None:
            # pint accepts any prefix on any spelling; these are the conventional pairings.
            names = [definition.name, *(a for a in definition.aliases if a.isidentifier())]
            symbols = [s for s in (definition.symbol, *definition.aliases) if s]
            spellings.append((names, symbols, phrase))
    # Unprefixed spellings first: where a prefixed one collides ('min': minute, not milli-inch), pint
    # reads the plain unit too.
    for names, symbols, phrase in spellings:
        for spelling in (*names, *symbols, *(name + "s" for name in names)):
            add(spelling, phrase)
    for names, symbols, phrase in spellings:
        for prefix in prefix_names - {""}:
            for name in names:
                add(prefix + name, phrase)
                add(prefix + name + "s", phrase)
        for prefix in prefix_symbols:
            for symbol in symbols:
                add(prefix + symbol, phrase)
    return table


# Kinds of quantity named in messages, by pint dimensionality, as codes (their words: messages.toml
# [dimension]); a concentration maps to None.
_KINDS: dict[tuple[tuple[str, float], ...], str | None] = {
    (("[mass]", 1),): "mass",
    (("[length]", 3),): "volume",
    (("[temperature]", 1),): "temperature",
    (("[substance]", 1),): "amount_of_substance",
    (): "dimensionless",
    (("[length]", 1),): "length",
    (("[length]", 2),): "area",
    (("[time]", 1),): "time",
    (("[time]", -1),): "frequency",
    (("[current]", 1),): "electric_current",
    (("[luminosity]", 1),): "luminous_intensity",
    (("[length]", -3), ("[mass]", 1)): None,
    (("[length]", -3), ("[substance]", 1)): None,
}


DIMENSION_KINDS = tuple(sorted({kind for kind in _KINDS.values() if kind is not None} | {"other"}))


def _phrase(dims: tuple[tuple[str, float], ...]) -> str | None:
    # Any other dimension is still a known unit, just not one worth naming in the message.
    return _KINDS.get(dims, "other")


def describe_dimension(text: str) -> str | None:
    """For an error message only: what kind of quantity an unaccepted unit is, as a noun phrase
    ("mass"); None when the text is no single unit pint knows, or is a concentration.

    An exact look-up of the folded text in dimension_table(): no parsing, no lock, no pint.
    """
    table = _dimensions if _dimensions is not None else dimension_table()
    if len(text) > _LONGEST_SPELLING:
        return None
    return table.get(fold_spelling(text))
