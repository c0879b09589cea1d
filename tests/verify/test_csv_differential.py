"""Differential test of the file path's specimen and history rules (applied to a whole block of specimens at
once) against the single-panel path (verify_request, as /v1/verify): seeded random files of many patients in
shuffled order, with repeated, out-of-order and missing collected_at, results held by their own rules
(critical, haemolysis suppress) and by EDTA, intravenous-fluid and delta triggers; every rule has rows where it
fires and rows where it could but does not."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from labinterp.core.engine import Engine
from labinterp.core.knowledge import load_knowledge
from labinterp.core.verification import (
    PreviousResult,
    ResultColumns,
    latest_previous,
    micros,
    previous_columns,
)
from labinterp.core.verification_data import load_verification
from labinterp.files import verifycsv
from tests.verify.helpers import LAB_VERIFICATION, make_labs
from tests.verify.test_csv_same_answers import HEADER
from tests.verify.test_csv_same_answers import oracle as patient_oracle

# the test laboratory's rules, with a window on the intravenous-fluid rule too
WINDOWED = LAB_VERIFICATION + "\n[rule.iv_fluid_contamination]\nwindow_hours = 30\n"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def history_file(seed: int, patients: int = 120, specimens: int = 900) -> list[list[str]]:
    """Specimens of many patients in shuffled order; each patient's values drift, jump (delta, IV fluid) or come
    with EDTA's pattern; times repeat, go back or are missing."""
    rng = random.Random(seed)
    clock = {f"P{p}": rng.randrange(200) for p in range(patients)}
    rows: list[list[str]] = []
    for s in range(specimens):
        pid = f"P{rng.randrange(patients)}" if rng.random() < 0.97 else ""
        step = rng.choice([6, 6, 6, 12, 24, 48, 80, 0, -20, -100])  # 0: the same time again; < 0: late
        hours = clock.get(pid, 0) + step
        if pid:
            clock[pid] = max(clock[pid], hours)
        when = "" if rng.random() < 0.08 else (T0 + timedelta(hours=hours)).isoformat()
        if when and rng.random() < 0.1:  # the same instant written with an offset
            when = (T0 + timedelta(hours=hours)).astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00"
        kind = rng.random()
        if kind < 0.08:  # EDTA: high potassium, low calcium (and sometimes low magnesium)
            panel = [("potassium", "mmol/L", rng.uniform(6.0, 6.6)), ("calcium", "mmol/L", rng.uniform(1.6, 2.0))]
            if rng.random() < 0.5:
                panel.append(("magnesium", "mmol/L", rng.uniform(0.4, 0.6)))
        elif kind < 0.16:  # EDTA's near misses: potassium just below, or calcium not low
            panel = [("potassium", "mmol/L", rng.choice([5.95, 6.2])), ("calcium", "mmol/L", rng.uniform(2.2, 2.5))]
        elif kind < 0.26:  # intravenous fluid: calcium falls, potassium jumps
            panel = [("calcium", "mmol/L", rng.uniform(1.3, 1.7)), ("potassium", "mmol/L", rng.uniform(3.5, 5.0))]
            if rng.random() < 0.5:
                panel = [("potassium", "mmol/L", rng.uniform(7.5, 8.5)), ("albumin", "g/dL", rng.uniform(3.5, 4.5))]
        else:  # ordinary panels near the patient's usual values
            usual = [("potassium", "mmol/L", rng.gauss(4.3, 0.5)), ("calcium", "mmol/L", rng.gauss(2.35, 0.1)),
                     ("calcium", "mg/dL", rng.gauss(9.4, 0.4)), ("magnesium", "mmol/L", rng.gauss(0.85, 0.1)),
                     ("albumin", "g/dL", rng.gauss(4.0, 0.3))]
            panel = rng.sample(usual, rng.randint(1, 4))
        age, sex = rng.choice(["", "45", "80"]), rng.choice(["", "female", "M"])  # a specimen's rows agree
        for analyte, unit, value in panel:
            comparator = ">" if rng.random() < 0.02 else ""
            hemolysis = rng.choice(["", "", "", "", "", "slight", "gross"])
            index = rng.choice(["", "", "", "", "", "30", "120", "700"])
            rows.append([pid, f"S{s}", analyte, f"{max(value, 0.05):.2f}", unit, comparator, hemolysis, index, when,
                         age, sex])
    return rows


def oracle(engine: Engine, rules: dict, lab: str | None, rows: list[list[str]]) -> list[tuple[str, ...]]:
    """Each specimen through verify_request with its patient's earlier released results (the module docstring's
    previous results; test_csv_same_answers.oracle); a specimen without patient_id has none and gives none."""
    out: list[tuple[str, ...]] = [("", "", "", "")] * len(rows)
    known = [i for i, r in enumerate(rows) if r[0]]  # specimen ids are unique: leaving rows out joins none
    for i, answer in zip(known, patient_oracle(engine, rules, lab, [rows[i] for i in known]), strict=True):
        out[i] = answer
    anonymous = [i for i, r in enumerate(rows) if not r[0]]
    for i in anonymous:  # each specimen alone
        specimen = [j for j in anonymous if rows[j][1] == rows[i][1]]
        if specimen[0] == i:
            for j, answer in zip(specimen, patient_oracle(engine, rules, lab, [rows[j] for j in specimen]),
                                 strict=True):
                out[j] = answer
    return out


def run_file(engine: Engine, rules: dict, lab: str | None, rows: list[list[str]]) -> list[tuple[str, ...]]:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([HEADER, *rows])
    job = verifycsv.VerifyJob(engine, rules, lab, io.BytesIO(text.getvalue().encode()))
    answer = list(csv.DictReader(io.StringIO(b"".join(job).decode())))
    assert all(not r["error"] for r in answer)
    return [(r["disposition"], r["verification_actions"], r["verification_reasons"], r["flag"]) for r in answer]


@pytest.mark.parametrize(("seed", "profile", "block"), [(11, None, 7_000), (12, LAB_VERIFICATION, 15_000),
                                                         (13, WINDOWED, 70_000), (14, LAB_VERIFICATION, 1 << 20),
                                                         (15, WINDOWED, 4_000)])
def test_the_block_rules_decide_as_the_single_panel_path(tmp_path, monkeypatch, seed, profile, block):
    monkeypatch.setattr(verifycsv, "BLOCK_BYTES", block)  # a patient's history crosses blocks, or stays in one
    knowledge = load_knowledge(None, make_labs(tmp_path, profile) if profile else None)
    engine, rules = Engine(knowledge), load_verification(knowledge)
    lab = "testlab" if profile else None
    rows = history_file(seed)
    got = run_file(engine, rules, lab, rows)
    assert got == oracle(engine, rules, lab, rows)
    reasons = [reason.split(":")[0] for g in got for reason in g[2].split(" | ") if reason]
    held = set(reasons)
    expected = {"critical_value", "hemolysis", "edta_contamination", "iv_fluid_contamination"}
    if profile:
        expected.add("delta_check")
    assert expected <= held, held
    assert 0.05 < sum(g[0] == "hold" for g in got) / len(got) < 0.9
    # each history rule also has results it could judge and releases: potassium and calcium with a previous
    released = [g for g, r in zip(got, rows, strict=True) if g[0] == "release" and r[2] in ("potassium", "calcium")]
    assert len(released) > 100


def test_the_file_keeps_its_rules_with_one_patient_in_a_long_chain(tmp_path, monkeypatch):
    """One patient, every result depending on whether the one before was released (many rounds in a block)."""
    monkeypatch.setattr(verifycsv, "BLOCK_BYTES", 28_000)
    knowledge = load_knowledge(None, make_labs(tmp_path))
    engine, rules = Engine(knowledge), load_verification(knowledge)
    rng = random.Random(5)
    rows = []
    for s in range(600):
        when = (T0 + timedelta(hours=s * 3 + rng.choice([0, 0, -7]))).isoformat()
        value = rng.choice([3.5, 4.0, 4.6, 5.2, 5.9])  # delta limit 1.0 mmol/L: steps of 0.5 to 2.4
        rows.append(["P1", f"S{s}", "potassium", f"{value:.2f}", "mmol/L", "", "", "", when, "", ""])
    got = run_file(engine, rules, "testlab", rows)
    assert got == oracle(engine, rules, "testlab", rows)
    assert {g[0] for g in got} == {"hold", "release"}


def _reference(previous: list[PreviousResult], now: datetime | None, window: float | None) -> int:
    """The choice of the previous result as the module docstring and the rules' text state it (test oracle)."""
    best = -1
    for j, p in enumerate(previous):
        if now is not None and p.collected_at is not None:
            hours = (now - p.collected_at).total_seconds() / 3600.0
            if hours <= 0 or (window is not None and hours > window):
                continue
        elif window is not None:
            continue
        chosen = previous[best] if best >= 0 else None
        if chosen is None or chosen.collected_at is None or (p.collected_at is not None
                                                             and p.collected_at >= chosen.collected_at):
            best = j
    return best


@pytest.mark.parametrize("seed", range(6))
def test_latest_previous_in_arrays(seed):
    """latest_previous over arrays of any length chooses as the rule states, row by row."""
    rng = random.Random(seed)
    for _ in range(200):
        times = [None if rng.random() < 0.2 else T0 + timedelta(hours=rng.choice([0, 1, 5, 5, 30, 80]))
                 for _ in range(rng.randint(1, 4))]
        previous = [PreviousResult(rng.choice(["potassium", "calcium"]), rng.uniform(1, 5), None,
                                   None if rng.random() < 0.3 else T0 + timedelta(hours=rng.choice([0, 1, 5, 29])))
                    for _ in range(rng.randint(0, 5))]
        window = rng.choice([None, 24.0, 4.0])
        names = ["potassium", "calcium"]
        analytes = [rng.choice(names) for _ in times]
        rows = ResultColumns(np.zeros(1, dtype=np.int64), names, np.array([names.index(a) for a in analytes]),
                             np.ones(len(times)), np.zeros(len(times), dtype=np.int8),
                             np.zeros(len(times), dtype=np.int8),
                             np.array([0 if t is None else micros(t) for t in times], dtype=np.int64),
                             np.array([t is not None for t in times]))
        before = previous_columns(previous, names)
        query, candidate = np.nonzero(rows.analyte[:, None] == before.analyte[None, :])
        chosen = latest_previous(rows, before, query, candidate,
                                 np.full(len(times), np.nan if window is None else window))
        for i, (analyte, now) in enumerate(zip(analytes, times, strict=True)):
            mine = [j for j, p in enumerate(previous) if p.analyte == analyte]
            expected = _reference([previous[j] for j in mine], now, window)
            assert chosen[i] == (mine[expected] if expected >= 0 else -1)
