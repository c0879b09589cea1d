"""Readiness: the data loaded, validated, and answering a self-check through the engine."""

from __future__ import annotations

from dataclasses import dataclass

from labinterp.core import Engine, Panel, Patient, ResultInput
from labinterp.core.knowledge import Knowledge


@dataclass(frozen=True)
class Readiness:
    ready: bool
    data_version: str
    laboratories: tuple[str, ...]
    reason: str | None = None


def self_check_panel(k: Knowledge) -> Panel:
    """The midpoint of every adult default interval, in its canonical unit: each must read normal.
    Built from the data itself, so the check holds no clinical number of its own."""
    results = tuple(
        ResultInput(analyte, (rule.low + rule.high) / 2, k.analytes[analyte].canonical_unit,
                    specimen=rule.specimens[0])
        for analyte, rules in k.intervals.items() for rule in rules
        if rule.adult_default and rule.low is not None and rule.high is not None)
    return Panel(results=results, patient=Patient(), lab=k.lab)


def check(engine: Engine) -> Readiness:
    """Run the self-check on the default data and every laboratory profile."""
    k = engine.knowledge
    labs = tuple(sorted(k.profiles))
    for knowledge in (k, *(k.profiles[name] for name in labs)):
        where = knowledge.lab or "default data"
        try:
            panel = self_check_panel(knowledge)
            if not panel.results:
                return Readiness(False, k.data_version, labs, f"{where}: no adult default interval to check")
            answer = engine.interpret(panel)
        except Exception as error:  # noqa: BLE001 - any failure means not ready; type only (no input here)
            return Readiness(False, k.data_version, labs, f"{where}: self-check raised {type(error).__name__}")
        wrong = sorted({r.analyte for r in answer.results if r.verdict.classification != "normal"})
        if wrong:
            return Readiness(False, k.data_version, labs,
                             f"{where}: self-check did not read normal for {', '.join(wrong)}")
    return Readiness(True, k.data_version, labs)
