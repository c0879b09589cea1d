"""A verified file gives, row by row, what /v1/verify's rules give each specimen with the patient's earlier
released results as previous results: the file path and the engine decide alike."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta

import pytest

from labinterp.core.engine import Engine
from labinterp.core.knowledge import load_knowledge
from labinterp.core.model import Panel, ResultInput
from labinterp.core.patients import patient
from labinterp.core.verification import PreviousInput, VerificationInput, verify_request
from labinterp.core.verification_data import load_verification
from labinterp.files import verifycsv
from labinterp.render.verify import csv_cells
from tests.verify.helpers import make_labs

ANALYTES = (("potassium", "mmol/L", 1.5, 9.0), ("calcium", "mmol/L", 1.2, 3.8), ("calcium", "mg/dL", 5.0, 15.0),
            ("magnesium", "mmol/L", 0.2, 2.0), ("albumin", "g/dL", 1.5, 5.5))
HEADER = ["patient_id", "specimen_id", "analyte", "value", "unit", "comparator", "hemolysis", "hemolysis_index",
          "collected_at", "age_years", "sex"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def varied_file(seed: int, specimens: int = 400) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for s in range(specimens):
        pid = f"P{rng.randrange(40)}"
        # mostly in order, sometimes late (collected before the patient's latest result), sometimes without time
        hours = s * 6 + rng.choice([0, 0, 0, 0, -30, 2])
        when = "" if rng.random() < 0.1 else (T0 + timedelta(hours=hours)).isoformat()
        age = rng.choice(["", "45", "80", "0.5", "12"])
        sex = rng.choice(["", "female", "M"])
        index = rng.choice(["", "", "", "30", "120", "700"])
        for analyte, unit, low, high in rng.sample(ANALYTES, rng.randint(1, 4)):
            comparator = ">" if rng.random() < 0.03 else ""
            hemolysis = rng.choice(["", "", "", "slight", "gross"])
            rows.append([pid, f"S{s}", analyte, f"{rng.uniform(low, high):.2f}", unit, comparator, hemolysis, index,
                         when, age, sex])
    return rows


def oracle(engine: Engine, rules: dict, lab: str | None, rows: list[list[str]]) -> list[tuple[str, str, str, str]]:
    """Each specimen through verify_request (the /v1/verify rules), previous results being the patient's
    earlier released rows (the latest per analyte; one collected before the kept one does not replace it)."""
    kept: dict[str, dict[str, tuple[list[str], datetime | None]]] = {}
    out: list[tuple[str, str, str, str]] = []
    start = 0
    while start < len(rows):
        end = start
        while end < len(rows) and rows[end][1] == rows[start][1]:
            end += 1
        group = rows[start:end]
        first = group[0]
        who = patient(float(first[9]) if first[9] else None, None, {"female": "female", "M": "male"}.get(first[10]))
        times = tuple(datetime.fromisoformat(r[8]) if r[8] else None for r in group)
        previous = tuple(PreviousInput(r[2], float(r[3]), r[4], t, r[5] or None)
                         for r, t in kept.get(first[0], {}).values())
        request = VerificationInput(
            Panel(tuple(ResultInput(r[2], float(r[3]), r[4], comparator=r[5] or None, hemolysis=r[6] or None)
                        for r in group), who, None, lab),
            times, tuple(float(r[7]) if r[7] else None for r in group), previous)
        pv = verify_request(engine, rules, request)
        mine = kept.setdefault(first[0], {})
        for r, t, result, v in zip(group, times, pv.outcome.results, pv.results, strict=True):
            out.append((*csv_cells(rules[lab], v), result.verdict.flag or ""))
            before = mine.get(result.analyte)
            if v.disposition == "release" and not (before is not None and before[1] is not None and t is not None
                                                   and t < before[1]):
                mine[result.analyte] = (r, t)
        start = end
    return out


@pytest.mark.parametrize(("seed", "with_lab"), [(1, False), (2, True), (3, False)])
def test_the_file_path_verifies_as_the_engine(tmp_path, monkeypatch, seed, with_lab):
    monkeypatch.setattr(verifycsv, "BLOCK_BYTES", 7_000)  # many blocks: previous results cross them
    knowledge = load_knowledge(None, make_labs(tmp_path) if with_lab else None)
    engine, rules = Engine(knowledge), load_verification(knowledge)
    lab = "testlab" if with_lab else None
    rows = varied_file(seed)
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([HEADER, *rows])
    job = verifycsv.VerifyJob(engine, rules, lab, io.BytesIO(text.getvalue().encode()))
    answer = list(csv.DictReader(io.StringIO(b"".join(job).decode())))
    got = [(r["disposition"], r["verification_actions"], r["verification_reasons"], r["flag"]) for r in answer]
    assert all(not r["error"] for r in answer)
    expected = oracle(engine, rules, lab, rows)
    assert got == expected
    held = sum(1 for g in got if g[0] == "hold")
    assert 0 < held < len(got)  # both dispositions are compared
    codes = {reason.split(":")[0] for g in got for reason in g[2].split(" | ") if reason}
    assert {"critical_value", "delta_check" if with_lab else "iv_fluid_contamination", "hemolysis"} <= codes
