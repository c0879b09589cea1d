"""Unit spellings and conversion factors, derived once with pint at load time.

pint is used only here, only while data loads: it derives one float factor per
(analyte, unit) into the analyte's canonical unit, from the SI definitions in
concentration_units.txt (parsed in milliseconds; pint's default registry of every unit takes
about 0.3 s). Requests multiply by that factor and never touch pint (its context conversions
are slow and not thread-safe). Only an error message about a refused unit asks pint's default
registry what kind of quantity the text is.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pint

MICRO_SIGNS = str.maketrans({"\u00b5": "u", "\u03bc": "u"})
DEFINITIONS = Path(__file__).with_name("concentration_units.txt")
_registry: pint.UnitRegistry[Any] | None = None
_describer: pint.UnitRegistry[Any] | None = None
_registry_lock = threading.Lock()
_SAFE_UNIT_TEXT = re.compile(r"^[A-Za-z%/.*^0-9 ]{1,24}$")


def registry() -> pint.UnitRegistry[Any]:
    """The registry factors are derived with (concentration_units.txt), built on first use under a lock."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = pint.UnitRegistry(str(DEFINITIONS))
        return _registry


def describer() -> pint.UnitRegistry[Any]:
    """pint's default registry, which knows every common unit: used only to say what kind of quantity
    a refused unit is. Built on first use under the lock; the service builds it at start-up."""
    global _describer
    with _registry_lock:
        if _describer is None:
            _describer = pint.UnitRegistry()
        return _describer


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


def describe_dimension(text: str) -> str | None:
    """For an error message only: what kind of quantity an unaccepted unit is.

    The text is checked against a narrow character set and handed to pint's unit parser
    (never to Python's eval); None when it is not a unit pint knows.
    """
    if not _SAFE_UNIT_TEXT.match(text):
        return None
    ureg = describer()
    with _registry_lock:
        try:
            unit = ureg.parse_units(text.replace("%", "percent"))
        except Exception:  # noqa: BLE001 - any parse failure just means "not a unit"
            return None
        dim = dict(unit.dimensionality)
    names: dict[tuple[tuple[str, Any], ...], str] = {
        (("[mass]", 1),): "a mass",
        (("[length]", 3),): "a volume",
        (("[temperature]", 1),): "a temperature",
        (("[substance]", 1),): "an amount of substance",
        (): "a dimensionless number",
        (("[length]", 1),): "a length",
        (("[time]", 1),): "a time",
    }
    key = tuple(sorted(dim.items()))
    if key in ((("[length]", -3), ("[mass]", 1)), (("[length]", -3), ("[substance]", 1))):
        return None  # a concentration, just not a spelling the data lists: "unknown unit"
    return names.get(key, "not a concentration")
