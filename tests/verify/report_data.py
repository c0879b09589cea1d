"""A generated file of results whose verification rates are known in advance (for the report tests)."""

from __future__ import annotations

from pathlib import Path

HEADER = "patient_id,specimen_id,analyte,value,unit,collected_at,hemolysis_index\r\n"
# 360 results: 230 released, 130 held (63.9 %); potassium 320 (220 released), calcium 40 (10 released).
EXPECTED = {"results": 360, "released": 230, "held": 130, "rate": "63.9 %",
            "potassium": (320, 220), "calcium": (40, 10),
            "by_reason": {"critical_value": 50, "hemolysis": 30, "edta_contamination": 40,
                          "iv_fluid_contamination": 10},
            "alerts": {"hemolysis": 50, "edta_contamination": 40, "iv_fluid_contamination": 10, "delta_check": 0}}


def write(path: Path, scale: int = 1) -> Path:
    """The file (`scale` copies with distinct patients): known counts times `scale`."""
    lines = [HEADER]
    day1, day2 = "2026-03-01T08:00:00Z", "2026-03-02T08:00:00Z"
    for copy in range(scale):
        n = 0

        def specimen(patient: str, rows: list[tuple[str, float, str, str]], copy: int = copy) -> None:
            nonlocal n
            n += 1
            for analyte, value, when, index in rows:
                lines.append(f"{copy}-{patient},{copy}-s{n},{analyte},{value},mmol/L,{when},{index}\r\n")

        for i in range(200):
            specimen(f"normal{i}", [("potassium", 4.0, day1, "")])
        for i in range(50):
            specimen(f"critical{i}", [("potassium", 6.8, day1, "")])
        for i in range(30):
            specimen(f"haemolysed{i}", [("potassium", 4.5, day1, "600")])
        for i in range(20):
            specimen(f"slight{i}", [("potassium", 4.5, day1, "60")])
        for i in range(20):
            specimen(f"edta{i}", [("potassium", 6.1, day1, ""), ("calcium", 1.9, day1, "")])
        for i in range(10):
            specimen(f"drip{i}", [("calcium", 2.4, day1, "")])
        for i in range(10):
            specimen(f"drip{i}", [("calcium", 1.7, day2, "")])
    path.write_text("".join(lines))
    return path
