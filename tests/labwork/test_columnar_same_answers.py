"""The file path (columnar) gives the same answers as Engine.interpret, panel by panel."""

from __future__ import annotations

import csv
import io
import random

import pytest

from labinterp.core import Engine, Panel, Patient, ResultInput
from labinterp.core.columnar import ColumnarInterpreter
from labinterp.files.csvfile import CsvJob
from labinterp.render import v1 as render_v1

ANALYTES = {
    "calcium": (["mg/dL", "mmol/L", "mg%", "MMOL/L", "meq/L", "mEq/L"], (3.0, 16.0)),
    "17861-6": (["mg/dL"], (3.0, 16.0)),
    "ionized_calcium": (["mmol/L", "mg/dL"], (0.5, 2.0)),
    "1994-3": (["mmol/L"], (0.5, 2.0)),
    "magnesium": (["mg/dL", "mmol/L", "mEq/L"], (0.3, 6.0)),
    "potassium": (["mmol/L", "mEq/L", "meq/l", "mM"], (1.5, 9.0)),
    "2823-3": (["mmol/L"], (1.5, 9.0)),
    "albumin": (["g/dL", "g/L", "g/l"], (1.0, 6.0)),
}
BAD = [("calcium", "9", "furlongs"), ("calcium", "HEMOLYZED", "mg/dL"), ("sodium", "140", "mmol/L"),
       ("potassium", "-1", "mmol/L"), ("potassium", "", "mmol/L"), ("albumin", "4", "")]


def random_rows(seed: int, panels: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for p in range(panels):
        age = rng.choice(["", "", "45", "70", "0.5", "8", "0.01"])
        days = "" if age else rng.choice(["", "", "3", "20", "400", "30000"])
        sex = rng.choice(["", "female", "male", "F", "m", "unknown"])
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.08:
                analyte, value, unit = rng.choice(BAD)
            else:
                analyte = rng.choice(list(ANALYTES))
                units, (lo, hi) = ANALYTES[analyte]
                unit = rng.choice(units)
                number = rng.uniform(lo, hi)
                if unit in ("mg/dL", "mg%") and analyte in ("calcium", "17861-6"):
                    number = number
                elif unit in ("mmol/L", "MMOL/L", "meq/L", "mEq/L") and analyte == "calcium":
                    number = number / 4.0 * (2 if unit in ("meq/L", "mEq/L") else 1)
                elif unit == "mg/dL" and analyte == "ionized_calcium":
                    number *= 4.0
                elif analyte == "magnesium" and unit != "mg/dL":
                    number /= 2.43 if unit == "mmol/L" else 1.2
                elif unit in ("g/L", "g/l"):
                    number *= 10
                value = f"{number:.2f}"
                if rng.random() < 0.05:
                    value = rng.choice(["<", ">", "<=", ">="]) + value
                if rng.random() < 0.02:
                    value = rng.choice(["60", "0.01"])
            specimen = rng.choice(["", "", "", "serum", "plasma", "whole_blood"])
            rows.append({"specimen_id": f"S{p}", "analyte": analyte, "value": value, "unit": unit,
                         "age_years": age, "age_days": days, "sex": sex, "specimen": specimen})
    return rows


def to_csv(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def run_csv(engine: Engine, text: str, block_bytes: int = 1500, lab: str | None = None) -> list[dict[str, str]]:
    job = CsvJob(ColumnarInterpreter(engine, lab), io.BytesIO(text.encode()), block_bytes=block_bytes)
    return list(csv.DictReader(io.StringIO(b"".join(job).decode(), newline="")))


def expected_row(result: dict, patterns: list[dict], index: int | None) -> dict[str, str]:
    codes = [w["code"] for w in result["warnings"]]
    codes += [f"pattern:{p['id']}" for p in patterns
              if any(r["index"] == index and r["analyte"] == result["analyte"] for r in p["results"])]
    interval = result["reference_interval"] or {}
    return {
        "canonical_value": repr(result["value"]["value"]),
        "canonical_unit": result["value"]["unit"],
        "interval_low": "" if interval.get("low") is None else repr(interval["low"]),
        "interval_high": "" if interval.get("high") is None else repr(interval["high"]),
        "classification": result["classification"],
        "flag": result["flag"] or "",
        "critical": "true" if result["critical"] else "false",
        "ctcae_grade": "" if result["ctcae"] is None else str(result["ctcae"]["grade"]),
        "warnings": "|".join(codes),
        "interval_origin": interval.get("origin", ""),
        "interval_source": interval.get("source", ""),
    }


def panels_of(rows: list[dict[str, str]]) -> list[list[tuple[int, dict[str, str]]]]:
    panels: list[list[tuple[int, dict[str, str]]]] = []
    for i, row in enumerate(rows):
        if panels and panels[-1][0][1]["specimen_id"] == row["specimen_id"]:
            panels[-1].append((i, row))
        else:
            panels.append([(i, row)])
    return panels


SEX = {"F": "female", "m": "male"}


def engine_answer(engine: Engine, rows: list[tuple[int, dict[str, str]]], lab: str | None = None) -> dict:
    first = rows[0][1]
    if first["age_years"]:
        patient = Patient(float(first["age_years"]) * 365.25, True, SEX.get(first["sex"], first["sex"] or None))
    elif first["age_days"]:
        patient = Patient(float(first["age_days"]), False, SEX.get(first["sex"], first["sex"] or None))
    else:
        patient = Patient(sex=SEX.get(first["sex"], first["sex"] or None))
    results = []
    for _, row in rows:
        value, comparator = row["value"], None
        for c in ("<=", ">=", "<", ">"):
            if value.startswith(c):
                value, comparator = value[len(c):], c
                break
        results.append(ResultInput(row["analyte"], float(value), row["unit"], comparator=comparator,
                                   specimen=row["specimen"] or None))
    return render_v1.interpret(engine, Panel(tuple(results), patient, None, lab))


def check_same(engine: Engine, rows: list[dict[str, str]], out: list[dict[str, str]], lab: str | None = None) -> int:
    """Compare every panel; returns how many results were compared."""
    compared = 0
    position = 0  # index into out (derived rows are extra)
    for panel in panels_of(rows):
        outputs = out[position:position + len(panel)]
        position += len(panel)
        good = [(i, row) for (i, row), o in zip(panel, outputs, strict=True) if not o["error"]]
        for (_, row), o in zip(panel, outputs, strict=True):
            assert o["specimen_id"] == row["specimen_id"] and o["value"] == row["value"]
        if not good:
            continue
        answer = engine_answer(engine, good, lab)
        good_outputs = [o for o in outputs if not o["error"]]
        for j, (result, o) in enumerate(zip(answer["results"], good_outputs, strict=True)):
            got = {key: o[key] for key in expected_row(result, [], None)}
            assert got == expected_row(result, answer["patterns"], j), (panel, j)
            compared += 1
        for derived in answer["derived"]:
            o = out[position]
            position += 1
            assert o["analyte"] == "corrected_calcium"
            assert float(o["value"]) == derived["input"]["value"]
            want = expected_row(derived, answer["patterns"], None)
            want["warnings"] = "derived|" + want["warnings"]
            assert {key: o[key] for key in want} == want
            compared += 1
    assert position == len(out)
    return compared


@pytest.mark.parametrize("seed", range(8))
def test_csv_path_gives_the_engine_answers(engine: Engine, seed: int) -> None:
    rows = random_rows(seed, 150)
    out = run_csv(engine, to_csv(rows), block_bytes=1100 + seed * 330)
    assert check_same(engine, rows, out) > 300
    assert any(o["error"] for o in out)


def test_comparison_fails_when_an_answer_differs(engine: Engine) -> None:
    rows = random_rows(1, 40)
    out = run_csv(engine, to_csv(rows))
    victim = next(o for o in out if o["classification"] == "normal")
    victim["classification"] = "hyper"
    with pytest.raises(AssertionError):
        check_same(engine, rows, out)


def test_emptying_the_caches_mid_file_changes_nothing(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import labinterp.core.columnar as columnar

    text = to_csv(random_rows(5, 120))
    whole = run_csv(engine, text, block_bytes=1200)
    monkeypatch.setattr(columnar, "MAX_CACHED", 3)
    interpreter = ColumnarInterpreter(engine)
    job = CsvJob(interpreter, io.BytesIO(text.encode()), block_bytes=1200)
    emptied = list(csv.DictReader(io.StringIO(b"".join(job).decode(), newline="")))
    assert interpreter.generation > 3  # the caches were emptied between chunks
    assert emptied == whole


def test_the_garbage_collector_is_restored(engine: Engine) -> None:
    import gc

    text = to_csv(random_rows(2, 30))
    seen = []
    job = CsvJob(ColumnarInterpreter(engine), io.BytesIO(text.encode()), block_bytes=300,
                 progress=lambda summary: seen.append(gc.isenabled()))
    original = job.interpreter.interpret

    def spy(chunk):  # type: ignore[no-untyped-def]
        seen.append(("inside", gc.isenabled()))
        return original(chunk)

    job.interpreter.interpret = spy  # type: ignore[method-assign]
    assert gc.isenabled()
    b"".join(job)
    assert gc.isenabled()
    assert ("inside", False) in seen and all(s for s in seen if not isinstance(s, tuple))
