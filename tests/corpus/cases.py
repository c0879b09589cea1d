"""The same-answers corpus: generated panels and the test files, sent through every door."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected"
LABS = ROOT / "examples" / "labs"
FILES = ROOT / "tests" / "labwork" / "files"
SEED = 20261202
PANELS = 3000

ANALYTES = {
    "calcium": ["calcium", "17861-6", "2000-8"],
    "ionized_calcium": ["ionized_calcium", "1995-0", "1994-3", "17864-0"],
    "magnesium": ["magnesium", "19123-9", "2601-3"],
    "potassium": ["potassium", "2823-3"],
    "albumin": ["albumin", "1751-7"],
}
UNITS = {
    "calcium": ["mg/dL", "mg/dl", "mmol/L", "mg%", "mEq/L", "umol/L", "mg/L", "µmol/L"],
    "ionized_calcium": ["mmol/L", "mg/dL", "mEq/L"],
    "magnesium": ["mg/dL", "mmol/L", "mEq/L", "mg/L"],
    "potassium": ["mmol/L", "mEq/L", "meq/L", "mM", "mg/dL"],
    "albumin": ["g/dL", "g/L", "g%"],
}
BAD_UNITS = ["kg", "cm", "banana", "", "mmol", "m^2", "mg/dL/h"]
TYPICAL = {  # a typical canonical-ish value in the first unit of UNITS, and a spread
    "calcium": (9.4, 3.0), "ionized_calcium": (1.2, 0.4), "magnesium": (1.9, 1.0),
    "potassium": (4.3, 2.4), "albumin": (3.8, 1.8),
}
SEXES = [None, "female", "male", "other", "unknown"]
SPECIMENS = [None, None, None, "serum", "plasma", "whole_blood"]
HEMOLYSIS = [None, None, "none", "slight", "moderate", "gross"]
COMPARATORS = [None] * 24 + ["<", "<=", ">", ">="]
AGES_DAYS = [0, 1, 3, 7, 8, 14, 30, 90, 179, 180, 181, 364, 365, 366, 700, 1000, 2000, 4000, 6000, 6574, 6575,
             7000, 20000, 30000, 36500]


def _edges(knowledge: Any) -> dict[str, list[float]]:
    """Canonical figures of the data (intervals, limits, CTCAE edges) per analyte, with their neighbours."""
    out: dict[str, list[float]] = {a: [] for a in ANALYTES}
    for analyte, rules in knowledge.intervals.items():
        for r in rules:
            out.setdefault(analyte, []).extend(x for x in (r.low, r.high) if x is not None)
    for analyte, rules in knowledge.critical.items():
        for c in rules:
            out.setdefault(analyte, []).extend(x for x in (c.low, c.high) if x is not None)
    for (analyte, _), t in knowledge.ctcae.items():
        out.setdefault(analyte, []).extend(t.edges)
    return {a: sorted({x * (1 + d) for x in v for d in (-0.02, -1e-9, 0.0, 1e-9, 0.02)})
            for a, v in out.items() if a in ANALYTES}


def _value(rng: random.Random, knowledge: Any, edges: dict[str, list[float]], name: str, unit: str) -> float:
    """A value in `unit`: near a figure of the data now and then, else around a typical value."""
    ucum = knowledge.resolve_unit(unit)
    factor = knowledge.factors.get((name, ucum)) if ucum else None
    first = knowledge.factors[(name, knowledge.resolve_unit(UNITS[name][0]))]
    if rng.random() < 0.4 and edges.get(name):
        canonical = rng.choice(edges[name])
    else:
        mid, spread = TYPICAL[name]
        canonical = max(0.0, rng.gauss(mid, spread / 2)) * first
    value = canonical / (factor or first)
    return value if rng.random() < 0.3 else round(value, rng.choice([1, 2, 2, 3]))


def panels(knowledge: Any) -> list[dict[str, Any]]:
    """PANELS generated /v1/interpret bodies (deterministic)."""
    rng = random.Random(SEED)
    edges = _edges(knowledge)
    out: list[dict[str, Any]] = []
    for n in range(PANELS):
        body: dict[str, Any] = {"results": []}
        count = rng.choice([1, 1, 2, 3, 3, 4, 5])
        names = rng.sample(list(ANALYTES), k=min(count, len(ANALYTES)))
        if rng.random() < 0.3:
            names = ["calcium", "albumin", *rng.sample(["magnesium", "potassium"], k=rng.randint(0, 2))]
        for i, name in enumerate(names):
            spelled = rng.choice(ANALYTES[name])
            unit = rng.choice(UNITS[name])
            value: Any = _value(rng, knowledge, edges, name, unit)
            result: dict[str, Any] = {"analyte": spelled, "value": value, "unit": unit}
            if rng.random() < 0.5:
                result["id"] = f"r{n}-{i}"
            cmp = rng.choice(COMPARATORS)
            if cmp:
                result["comparator"] = cmp
            spec = rng.choice(SPECIMENS)
            if spec:
                result["specimen"] = spec
            hem = rng.choice(HEMOLYSIS)
            if hem and name == "potassium":
                result["hemolysis"] = hem
            if rng.random() < 0.12:
                low = round(value * rng.uniform(0.6, 0.95), 2)
                high = round(value * rng.uniform(1.02, 1.4), 2)
                sent: dict[str, Any] = {"low": low, "high": high}
                if rng.random() < 0.2:
                    sent.pop(rng.choice(["low", "high"]))
                if rng.random() < 0.3:
                    sent["unit"] = unit
                if rng.random() < 0.3:
                    sent["text"] = "lab range"
                result["reference_interval"] = sent
            # bad inputs, now and then
            roll = rng.random()
            if roll < 0.02:
                result["unit"] = rng.choice(BAD_UNITS)
            elif roll < 0.03:
                result["value"] = -1.0
            elif roll < 0.035:
                result["analyte"] = "sodium"
            elif roll < 0.04:
                result["value"] = rng.choice([1e300, 99999.0, 0.0])
            body["results"].append(result)
        patient: dict[str, Any] = {}
        if rng.random() < 0.75:
            days = rng.choice(AGES_DAYS)
            if rng.random() < 0.5 and days >= 365:
                patient["age_years"] = round(days / 365.25, rng.choice([0, 1]))
            else:
                patient["age_days"] = days
        sex = rng.choice(SEXES)
        if sex:
            patient["sex"] = sex
        if patient:
            body["patient"] = patient
        if rng.random() < 0.1:
            body["specimen"] = rng.choice(["serum", "plasma", "whole_blood"])
        if rng.random() < 0.15:
            body["lab"] = "example-lab"
        out.append(body)
    return out


# ------------------------------------------------------------------- doors
def csv_files(bodies: list[dict[str, Any]]) -> Iterator[tuple[str, str | None, str]]:
    """The panels as CSV files (one per profile), plus the committed test files."""
    for lab in (None, "example-lab"):
        lines = ["specimen_id,analyte,value,unit,age_years,age_days,sex,specimen"]
        for n, body in enumerate(bodies):
            if (body.get("lab") is not None) != (lab is not None):
                continue
            patient = body.get("patient", {})
            for r in body["results"]:
                value = f"{r.get('comparator', '')}{r['value']!r}"
                lines.append(",".join([
                    f"S{n}", str(r["analyte"]), value, str(r["unit"]),
                    "" if "age_years" not in patient else repr(patient["age_years"]),
                    "" if "age_days" not in patient else repr(patient["age_days"]),
                    patient.get("sex", ""), r.get("specimen", body.get("specimen", "")) or ""]))
        yield f"generated-{lab or 'default'}.csv", lab, "\n".join(lines) + "\n"
    for path in sorted(FILES.glob("*.csv")):
        yield path.name, None, path.read_text(encoding="utf-8-sig")


UCUM_OF = {"mg/dL": "mg/dL", "mmol/L": "mmol/L", "g/dL": "g/dL", "g/L": "g/L", "mEq/L": "meq/L"}


def hl7_messages(bodies: list[dict[str, Any]]) -> Iterator[tuple[str, str | None, str]]:
    """Panels whose analytes are LOINC codes, as ORU^R01 messages; plus the committed test messages."""
    for n, body in enumerate(bodies):
        if n % 3:
            continue
        patient = body.get("patient", {})
        days = patient.get("age_days", (patient.get("age_years") or 0) * 365.25 if patient else None)
        birth = ""
        if patient and days is not None:
            y, rem = divmod(int(days), 365)
            birth = f"{2026 - y - 1:04d}{(rem // 31) % 12 + 1:02d}{(rem % 28) + 1:02d}"
        sex = {"female": "F", "male": "M", "other": "O", "unknown": "U"}.get(patient.get("sex", ""), "")
        segs = [f"MSH|^~\\&|LIS|LAB|EHR|WARD|20261123083000||ORU^R01^ORU_R01|M{n}|P|2.5.1",
                f"PID|1||P{n}^^^HOSP^MR||DOE^PAT||{birth}|{sex}",
                "OBR|1|O1|F1|24362-6^Panel^LN|||20261123073000"]
        for i, r in enumerate(body["results"]):
            code = r["analyte"] if str(r["analyte"])[:1].isdigit() else "2823-3"
            value = f"{r.get('comparator', '')}{r['value']}"
            kind = "SN" if r.get("comparator") else "NM"
            if kind == "SN":
                value = f"{r['comparator']}^{r['value']}"
            sent = r.get("reference_interval") or {}
            ref = ""
            if "low" in sent and "high" in sent:
                ref = f"{sent['low']}-{sent['high']}"
            elif "high" in sent:
                ref = f"<{sent['high']}"
            status = "D" if i == 4 else "F"
            segs.append(f"OBX|{i + 1}|{kind}|{code}^X^LN||{value}|{r['unit']}|{ref}||||{status}")
        yield f"generated-{n}", body.get("lab"), "\r".join(segs) + "\r"
    for path in sorted(FILES.glob("*.hl7")):
        yield path.name, None, path.read_text()


def fhir_bundles(bodies: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, body in enumerate(bodies):
        if n % 3 != 1:
            continue
        entries = []
        patient = body.get("patient", {})
        if patient:
            days = patient.get("age_days", (patient.get("age_years") or 0) * 365.25)
            year = 2026 - int(days // 365.25) - 1
            res: dict[str, Any] = {"resourceType": "Patient", "id": f"p{n}", "birthDate": f"{year}-06-15"}
            if patient.get("sex") in ("female", "male", "other", "unknown"):
                res["gender"] = patient["sex"]
            entries.append({"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}", "resource": res})
        for i, r in enumerate(body["results"]):
            code = r["analyte"] if str(r["analyte"])[:1].isdigit() else "2823-3"
            quantity: dict[str, Any] = {"value": r["value"], "unit": r["unit"]}
            if r["unit"] in UCUM_OF:
                quantity.update(system="http://unitsofmeasure.org", code=UCUM_OF[r["unit"]])
            if r.get("comparator"):
                quantity["comparator"] = r["comparator"]
            obs: dict[str, Any] = {"resourceType": "Observation", "id": f"o{n}-{i}", "status": "final",
                                   "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                                   "effectiveDateTime": "2026-11-20", "valueQuantity": quantity}
            if patient:
                obs["subject"] = {"reference": f"Patient/p{n}"}
            sent = r.get("reference_interval") or {}
            if "low" in sent or "high" in sent:
                rr = {}
                for side in ("low", "high"):
                    if side in sent:
                        rr[side] = {"value": sent[side], "unit": r["unit"]}
                obs["referenceRange"] = [rr]
            entries.append({"fullUrl": f"http://example.org/fhir/Observation/o{n}-{i}", "resource": obs})
        yield f"generated-{n}", {"resourceType": "Bundle", "type": "collection", "entry": entries}
    for path in sorted((ROOT / "tests" / "fhir" / "examples").glob("*.json")):
        yield path.name, json.loads(path.read_text())


def cds_calls(bodies: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, bundle in fhir_bundles(bodies):
        if not name.startswith("generated-") or int(name.split("-")[1]) % 9 != 1:
            continue
        observations = []
        for entry in bundle["entry"]:
            res = dict(entry["resource"])
            if res["resourceType"] == "Observation":
                res["subject"] = {"reference": "Patient/p1"}
                observations.append({"fullUrl": entry["fullUrl"], "resource": res})
        prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-05"},
                    "labs": {"resourceType": "Bundle", "type": "searchset", "total": len(observations),
                             "entry": observations}}
        yield name, {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                     "context": {"userId": "Practitioner/example", "patientId": "p1"}, "prefetch": prefetch}


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalise(body: bytes) -> bytes:
    """Generated UUIDs numbered in order of appearance (the structure they link stays checked)."""
    seen: dict[bytes, bytes] = {}
    return _UUID.sub(lambda m: seen.setdefault(m.group(0), b"uuid-%d" % len(seen)), body)


def answers(client: Any, knowledge: Any) -> Iterator[tuple[str, str, int, bytes]]:
    """(door, case, status, body) for every case of every door."""
    bodies = panels(knowledge)
    for n, body in enumerate(bodies):
        r = client.post("/v1/interpret", json=body)
        yield "v1", str(n), r.status_code, normalise(r.data)
    for start in range(0, len(bodies), 100):
        batch = [{"id": f"b{start + i}", **b} for i, b in enumerate(bodies[start:start + 100])]
        if start == 200:
            batch.append({"results": []})
            batch.append(7)
        r = client.post("/v1/interpret/batch", json={"panels": batch})
        yield "batch", str(start), r.status_code, normalise(r.data)
    for name, lab, text in csv_files(bodies):
        url = "/v1/interpret/csv" + (f"?lab={lab}" if lab else "")
        r = client.post(url, data=text.encode(), content_type="text/csv")
        yield "csv", name, r.status_code, normalise(r.data)
    for name, lab, text in hl7_messages(bodies):
        for annotate in (False, True):
            url = "/v1/hl7?" + "&".join(x for x in (f"lab={lab}" if lab else "", "annotate=1" if annotate else "") if x)
            r = client.post(url, data=text.encode(), content_type="application/hl7-v2")
            yield "hl7" + ("-annotate" if annotate else ""), name, r.status_code, normalise(r.data)
    for name, bundle in fhir_bundles(bodies):
        r = client.post("/fhir/Observation/$interpret", json=bundle, content_type="application/fhir+json")
        yield "fhir", name, r.status_code, normalise(r.data)
    for name, call in cds_calls(bodies):
        r = client.post("/cds-services/labinterp-electrolytes", json=call)
        yield "cds", name, r.status_code, normalise(r.data)


def record(path: Path, rows: Iterator[tuple[str, str, int, bytes]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as out:
        for door, case, status, body in rows:
            out.write(json.dumps([door, case, status, body.decode("utf-8", "replace")]) + "\n")
            count += 1
    return count


def recorded(path: Path) -> dict[tuple[str, str], tuple[int, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {(d, c): (s, b) for d, c, s, b in map(json.loads, f)}


def app_and_knowledge() -> tuple[Any, Any]:
    from labinterp.app import create_app
    from labinterp.core import load_knowledge

    app = create_app({"TESTING": True, "LABS_DIR": str(LABS)})
    return app, load_knowledge()


if __name__ == "__main__":
    app, knowledge = app_and_knowledge()
    n = record(EXPECTED / "answers.jsonl.gz", answers(app.test_client(), knowledge))
    print(f"recorded {n} answers in {EXPECTED / 'answers.jsonl.gz'}")
