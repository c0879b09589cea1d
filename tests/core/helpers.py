"""Small builders for core tests."""

from __future__ import annotations

from typing import Any

from labinterp.core import Engine, Panel, Patient, ResultInput, SentInterval
from labinterp.render import v1 as render_v1

ADULT = Patient(age_days=40 * 365.25, sex="female")


def one(engine: Engine, analyte: str, value: float, unit: str, patient: Patient | None = ADULT,
        **kwargs: Any) -> dict[str, Any]:
    """Interpret a single result and return its result dict."""
    if "interval" in kwargs:
        low, high, iunit = kwargs.pop("interval")
        kwargs["reference_interval"] = SentInterval(low, high, iunit)
    panel = Panel(results=(ResultInput(analyte, value, unit, **kwargs),), patient=patient,
                  specimen=kwargs.pop("panel_specimen", None))
    return render_v1.interpret(engine, panel)["results"][0]


def panel(engine: Engine, results: list[tuple[Any, ...]], patient: Patient | None = ADULT,
          **kwargs: Any) -> dict[str, Any]:
    items = tuple(ResultInput(*r) if isinstance(r, tuple) else r for r in results)
    return render_v1.interpret(engine, Panel(results=items, patient=patient, **kwargs))


def days(years: float) -> float:
    return years * 365.25
