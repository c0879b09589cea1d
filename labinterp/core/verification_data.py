"""Loading and validating verification.toml: the defaults, and each laboratory profile's overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from labinterp.core.engine import resolve_code
from labinterp.core.errors import DataError
from labinterp.core.knowledge import Knowledge, _Entry, _Problems, _read, template_fits
from labinterp.core.verification import (
    ACTIONS,
    ORDER,
    DeltaRule,
    EdtaRule,
    HemolysisRule,
    IvFluidRule,
    MeasuringRange,
    Tier,
    VerificationRules,
)

FILE = "verification.toml"
GRADES = ("slight", "moderate", "gross", "degree_not_stated")
# The rules whose analytes a profile lists: its entries replace the defaults' analyte by analyte.
# the words the renderers put into the reasons' texts ([text]), with the fields each may use
WORDS: dict[str, tuple[str, ...]] = {"word.not_stated": (), "word.yes": (), "word.no": (), "window.any": (),
                                     "window.hours": ("hours",)}
ANALYTE_LISTS = ("measuring_range", "hemolysis", "iv_fluid_contamination", "delta_check")
RULE_KEYS: dict[str, tuple[str, ...]] = {
    "critical_value": ("enabled", "action"),
    "implausible": ("enabled", "action"),
    "off_scale": ("enabled", "action", "source"),
    "measuring_range": ("enabled", "action", "below_action", "analyte"),
    "hemolysis": ("enabled", "index_unit", "index_source", "index_codes", "grade_source", "grades", "analyte"),
    "edta_contamination": ("enabled", "action", "source", "potassium_at_least", "unit", "low_calcium",
                           "supporting", "affects", "affects_source"),
    "iv_fluid_contamination": ("enabled", "action", "source", "window_hours", "window_source", "analyte"),
    "delta_check": ("enabled", "action", "source", "z", "window_source", "window_hours", "analyte"),
    "no_interval": ("enabled", "action"),
}


def load_verification(k: Knowledge) -> dict[str | None, VerificationRules]:
    """The rules in force by laboratory (None: the defaults); raises DataError naming file, entry, problem."""
    problems = _Problems()
    base_raw = _read(Path(k.data_dir) / FILE, problems)
    problems.raise_if_any()
    out: dict[str | None, VerificationRules] = {None: build(base_raw, k, problems, FILE)}
    for name, profile in k.profiles.items():
        path = Path(profile.data_dir) / FILE
        if path.is_file():
            raw = _read(path, problems)
            problems.raise_if_any()
            out[name] = build(overlay(base_raw, raw, problems, f"{name}/{FILE}"), profile, problems, f"{name}/{FILE}")
        else:
            out[name] = build(base_raw, profile, problems, FILE)
    return out


def overlay(base: dict[str, Any], lab: dict[str, Any], problems: _Problems, file: str) -> dict[str, Any]:
    """The defaults with a laboratory's keys on top, rule by rule; analyte entries replace by analyte."""
    merged = copy.deepcopy(base)
    top = _Entry(file, "top level", lab, problems)
    top.unknown_keys(("data_version", "rule", "text"))
    merged["data_version"] = f"{base.get('data_version', '')}+{lab.get('data_version', 'unversioned')}"
    rules = lab.get("rule", {})
    if not isinstance(rules, dict):
        problems.add(file, "rule", "must be a table")
        return merged
    for code, table in rules.items():
        if code not in RULE_KEYS:
            problems.add(file, f"rule.{code}", f"unknown rule (known: {list(ORDER)})")
            continue
        if not isinstance(table, dict):
            problems.add(file, f"rule.{code}", "must be a table")
            continue
        target = merged.setdefault("rule", {}).setdefault(code, {})
        for key, value in table.items():
            if key == "analyte" and isinstance(value, list):
                names = {e.get("analyte") for e in value if isinstance(e, dict)}
                kept = [e for e in target.get("analyte", []) if e.get("analyte") not in names]
                target["analyte"] = kept + value
            elif key == "grades" and isinstance(value, dict):
                target["grades"] = {**target.get("grades", {}), **value}
            else:
                target[key] = value
    texts = lab.get("text", {})
    if isinstance(texts, dict):
        merged["text"] = {**merged.get("text", {}), **texts}
    return merged


def build(raw: dict[str, Any], k: Knowledge, problems: _Problems, file: str) -> VerificationRules:
    top = _Entry(file, "top level", raw, problems)
    top.unknown_keys(("data_version", "rule", "text"))
    version = top.get("data_version", str, default="")
    rules_raw = top.get("rule", dict, default={})
    texts = top.get("text", dict, default={})
    known_sources = set(k.sources)

    def source(e: _Entry, key: str, required: bool = False) -> str | None:
        value = e.get(key, str, required=required)
        if value is not None and value not in known_sources:
            e.problem(f"'{key}' names an unknown source '{value}'")
            return None
        return value  # type: ignore[no-any-return]

    def canonical(e: _Entry, analyte: str, value: float, unit: str) -> float | None:
        ucum = k.spellings_exact.get(unit)
        factor = k.factors.get((analyte, ucum)) if ucum else None
        if factor is None:
            e.problem(f"unit '{unit}' cannot be converted for {analyte}")
            return None
        return value * factor

    def analyte_name(e: _Entry) -> str | None:
        name = e.get("analyte", str)
        if name is not None and (name not in k.analytes or k.analytes[name].derived):
            e.problem(f"names an unknown analyte '{name}'")
            return None
        return name  # type: ignore[no-any-return]

    def action(e: _Entry, key: str = "action", required: bool = True) -> str:
        value = e.get(key, str, required=required, default="review",
                      check=lambda v: None if v in ACTIONS else f"must be one of {list(ACTIONS)}")
        return value  # type: ignore[no-any-return]

    enabled: dict[str, bool] = {}
    actions: dict[str, str] = {}
    sources: dict[str, str | None] = {}
    entries: dict[str, _Entry] = {}
    for code in ORDER:
        e = _Entry(file, f"rule.{code}", rules_raw.get(code, {}), problems)
        if code not in rules_raw:
            e.problem("is required")
        e.unknown_keys(RULE_KEYS[code])
        entries[code] = e
        enabled[code] = bool(e.get("enabled", bool, default=False))
        actions[code] = action(e, required=code != "hemolysis") if code != "hemolysis" else "comment"
        sources[code] = source(e, "source") if "source" in RULE_KEYS[code] else None
    for code in rules_raw:
        if code not in ORDER:
            problems.add(file, f"rule.{code}", f"unknown rule (known: {list(ORDER)})")

    # measuring range (instrument-specific: profiles only)
    measuring: dict[str, MeasuringRange] = {}
    below_action = action(entries["measuring_range"], "below_action", required=False)
    for i, t in enumerate(entries["measuring_range"].get("analyte", list, required=False, default=[])):
        e = _Entry(file, f"rule.measuring_range.analyte[{i}]", t, problems)
        e.unknown_keys(("analyte", "low", "high", "unit", "source"))
        name, unit = analyte_name(e), e.get("unit", str)
        low, high = e.get("low", float, required=False), e.get("high", float, required=False)
        if low is None and high is None:
            e.problem("needs 'low', 'high' or both")
        if low is not None and high is not None and low >= high:
            e.problem("'low' must be below 'high'")
        if name and unit:
            measuring[name] = MeasuringRange(
                name, None if low is None else canonical(e, name, low, unit),
                None if high is None else canonical(e, name, high, unit), low, high, unit, source(e, "source"))

    # haemolysis
    he = entries["hemolysis"]
    hemolysis: dict[str, HemolysisRule] = {}
    for i, t in enumerate(he.get("analyte", list, required=False, default=[])):
        e = _Entry(file, f"rule.hemolysis.analyte[{i}]", t, problems)
        e.unknown_keys(("analyte", "source", "tiers"))
        name, src = analyte_name(e), source(e, "source", required=True)
        tiers: list[Tier] = []
        for j, tt in enumerate(e.get("tiers", list, default=[])):
            te = _Entry(file, f"rule.hemolysis.analyte[{i}].tiers[{j}]", tt, problems)
            te.unknown_keys(("from", "comparison", "action"))
            threshold = te.get("from", float)
            comparison = te.get("comparison", str, check=lambda v: None if v in (">=", ">") else "must be >= or >")
            act = action(te)
            if threshold is not None and threshold < 0:
                te.problem("'from' must not be negative")
            if threshold is not None and comparison:
                tiers.append(Tier(threshold, comparison, act))
        if [t.threshold for t in tiers] != sorted(t.threshold for t in tiers):
            e.problem("tiers must be in ascending order of 'from'")
        if name and src:
            hemolysis[name] = HemolysisRule(name, tuple(tiers), src)
    grades: dict[str, str] = {}
    for grade, act in he.get("grades", dict, required=False, default={}).items():
        if grade not in GRADES:
            he.problem(f"grades: unknown grade '{grade}' (known: {list(GRADES)})")
        elif act not in ACTIONS:
            he.problem(f"grades.{grade} must be one of {list(ACTIONS)}")
        else:
            grades[grade] = act
    index_unit = he.get("index_unit", str, default="mg/dL")
    index_codes: set[tuple[str, str]] = set()
    for i, t in enumerate(he.get("index_codes", list, required=False, default=[])):
        e = _Entry(file, f"rule.hemolysis.index_codes[{i}]", t, problems)
        e.unknown_keys(("system", "code", "display"))
        system, code_text = e.get("system", str), e.get("code", str)
        e.get("display", str, required=False)
        for key, value in (("system", system), ("code", code_text)):
            if value is not None and not value.strip():
                e.problem(f"'{key}' must not be empty")
        if system and code_text and system.strip() and code_text.strip():
            pair = (system.strip(), code_text.strip())
            if pair in index_codes:
                e.problem(f"names {pair[0]}|{pair[1]} twice")
            if resolve_code(k, pair[1], pair[0])[0] is not None:
                e.problem(f"{pair[0]}|{pair[1]} is the code of an analyte, not of the haemolysis index")
            index_codes.add(pair)

    # K2EDTA
    ee = entries["edta_contamination"]
    unit = ee.get("unit", str, default="mmol/L")
    stated = ee.get("potassium_at_least", float, default=0.0)
    k_canonical = canonical(ee, "potassium", stated, unit) if unit else None

    def names(e: _Entry, key: str) -> tuple[str, ...]:
        values = e.get(key, list, default=[])
        bad = [v for v in values if v not in k.analytes]
        if bad:
            e.problem(f"'{key}' names unknown analytes {bad}")
        return tuple(v for v in values if v in k.analytes)

    edta = EdtaRule(k_canonical or 0.0, stated, unit, names(ee, "low_calcium"), names(ee, "supporting"),
                    names(ee, "affects"), source(ee, "source", required=True) or "",
                    source(ee, "affects_source"))

    # intravenous fluid
    ie = entries["iv_fluid_contamination"]
    iv: dict[str, IvFluidRule] = {}
    iv_window = ie.get("window_hours", float, required=False)
    if iv_window is not None and iv_window <= 0:
        ie.problem("'window_hours' must be positive")
    for i, t in enumerate(ie.get("analyte", list, required=False, default=[])):
        e = _Entry(file, f"rule.iv_fluid_contamination.analyte[{i}]", t, problems)
        e.unknown_keys(("analyte", "change_percent_at_most", "rise_at_least", "unit"))
        name = analyte_name(e)
        percent = e.get("change_percent_at_most", float, required=False)
        rise = e.get("rise_at_least", float, required=False)
        unit_i = e.get("unit", str, required=rise is not None)
        if (percent is None) == (rise is None):
            e.problem("needs one of 'change_percent_at_most' or 'rise_at_least'")
        if percent is not None and percent >= 0:
            e.problem("'change_percent_at_most' must be negative (a fall)")
        if name:
            iv[name] = IvFluidRule(name, percent, None if rise is None or not unit_i else
                                   canonical(e, name, rise, unit_i), rise, unit_i)

    # delta check
    de = entries["delta_check"]
    z = de.get("z", float, default=1.96)
    default_window = de.get("window_hours", float, required=False)
    delta: dict[str, DeltaRule] = {}
    for i, t in enumerate(de.get("analyte", list, required=False, default=[])):
        e = _Entry(file, f"rule.delta_check.analyte[{i}]", t, problems)
        e.unknown_keys(("analyte", "cvi_percent", "cvi_source", "cva_percent", "absolute_limit", "unit",
                        "percent_limit", "window_hours", "source"))
        name = analyte_name(e)
        cvi, cva = e.get("cvi_percent", float, required=False), e.get("cva_percent", float, required=False)
        cvi_src = source(e, "cvi_source", required=cvi is not None)
        absolute, percent = e.get("absolute_limit", float, required=False), e.get("percent_limit", float,
                                                                                   required=False)
        unit_d = e.get("unit", str, required=absolute is not None)
        ways = (absolute is not None) + (percent is not None) + (cvi is not None or cva is not None)
        if ways != 1:
            e.problem("needs exactly one of 'absolute_limit' (with 'unit'), 'percent_limit', or "
                      "'cvi_percent' with 'cva_percent'")
        if (cvi is None) != (cva is None):
            e.problem("'cvi_percent' and 'cva_percent' go together (the reference change value needs both)")
        for key, value in (("cvi_percent", cvi), ("cva_percent", cva), ("absolute_limit", absolute),
                           ("percent_limit", percent)):
            if value is not None and value <= 0:
                e.problem(f"'{key}' must be positive")
        window = e.get("window_hours", float, required=False, default=default_window)
        if window is not None and window <= 0:
            e.problem("'window_hours' must be positive")
        if name:
            delta[name] = DeltaRule(name, cvi, cvi_src, cva,
                                    None if absolute is None or not unit_d else canonical(e, name, absolute, unit_d),
                                    absolute, unit_d, percent, window, source(e, "source"))

    text_entry = _Entry(file, "text", texts, problems)
    for key, value in texts.items():
        if not isinstance(value, str):
            text_entry.problem(f"'{key}' must be a string")
    for code in ORDER:
        if code not in texts and not any(str(key).startswith(code + ".") for key in texts):
            text_entry.problem(f"no text for '{code}'")
    for key, fields in WORDS.items():
        value = texts.get(key)
        if not isinstance(value, str):
            text_entry.problem(f"no text for '{key}'")
        else:
            template_fits(text_entry, key, value, fields)
    problems.raise_if_any()
    return VerificationRules(
        data_version=version, lab=k.lab, enabled=enabled, actions=actions, sources=sources,
        below_action=below_action, measuring=measuring, hemolysis=hemolysis, grades=grades, index_unit=index_unit,
        index_source=source(he, "index_source"), grade_source=source(he, "grade_source"), edta=edta,
        iv_fluid=iv, iv_window_hours=iv_window, window_source=source(ie, "window_source"), delta=delta,
        delta_z=z, texts={str(key): str(value) for key, value in texts.items()},
        canonical_units={a.id: a.canonical_unit for a in k.analytes.values()},
        source_titles={sid: s.title for sid, s in k.sources.items()},
        source_urls={sid: s.url for sid, s in k.sources.items()},
        index_codes=frozenset(index_codes),
    )


def check(k: Knowledge) -> list[tuple[str, str, str]]:
    """Problems in every verification.toml (defaults and profiles), for `labinterp check-data`."""
    try:
        load_verification(k)
    except DataError as exc:
        return list(exc.problems)
    return []
