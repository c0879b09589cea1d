"""Shared inputs for the verification tests: one case per rule that holds and one that releases."""

from __future__ import annotations

from pathlib import Path

LAB_VERIFICATION = """
data_version = "test-1"

[rule.measuring_range]
[[rule.measuring_range.analyte]]
analyte = "potassium"
low = 1.0
high = 10.0
unit = "mmol/L"

[rule.delta_check]
enabled = true
window_hours = 72

[[rule.delta_check.analyte]]
analyte = "potassium"
absolute_limit = 1.0
unit = "mmol/L"

[[rule.delta_check.analyte]]
analyte = "magnesium"
cvi_percent = 5.0
cvi_source = "eflm-bv"
cva_percent = 2.0

[rule.hemolysis]
# the codes the test laboratory's HL7 and FHIR feeds send the haemolysis index under
index_codes = [{ system = "L", code = "HI", display = "Haemolysis index" },
               { system = "http://lab.example.org/codes", code = "HIDX" }]

[rule.hemolysis.grades]
gross = "suppress"
"""



def make_labs(root: Path, verification: str = LAB_VERIFICATION, name: str = "testlab") -> Path:
    lab = root / name
    lab.mkdir(parents=True)
    (lab / "profile.toml").write_text('title = "Test laboratory"\ndata_version = "1"\n')
    (lab / "verification.toml").write_text(verification)
    return root


def k(value: float, **extra: object) -> dict[str, object]:
    return {"analyte": "potassium", "value": value, "unit": "mmol/L", **extra}


def ca(value: float, **extra: object) -> dict[str, object]:
    return {"analyte": "calcium", "value": value, "unit": "mmol/L", **extra}


def mg(value: float, **extra: object) -> dict[str, object]:
    return {"analyte": "magnesium", "value": value, "unit": "mmol/L", **extra}


T0 = "2026-03-01T08:00:00Z"
T1 = "2026-03-02T08:00:00Z"
T9 = "2026-03-09T08:00:00Z"

# (name, request body, expected rule code or None, expected disposition of result 0)
# Each rule has a case that holds (or comments) and one that releases.
CASES: list[tuple[str, dict[str, object], str | None, str]] = [
    ("critical holds", {"results": [k(6.8)]}, "critical_value", "hold"),
    ("critical releases", {"results": [k(4.2)]}, None, "release"),
    ("implausible holds", {"results": [k(25.0)]}, "implausible", "hold"),
    ("off-scale holds", {"results": [k(10.0, comparator=">")]}, "off_scale", "hold"),
    ("off-scale releases", {"results": [k(4.0)]}, None, "release"),
    ("hemolysis index suppress holds", {"results": [k(4.5, hemolysis_index=600)]}, "hemolysis", "hold"),
    ("hemolysis index comment releases", {"results": [k(4.5, hemolysis_index=60)]}, "hemolysis", "release"),
    ("hemolysis index below tier releases", {"results": [k(4.5, hemolysis_index=40)]}, None, "release"),
    ("hemolysis panel index holds", {"results": [k(4.5)], "hemolysis_index": 501}, "hemolysis", "hold"),
    ("hemolysis grade comments", {"results": [k(4.5, hemolysis="gross")]}, "hemolysis", "release"),
    ("edta holds", {"results": [k(6.1), ca(2.0)]}, "edta_contamination", "hold"),
    ("edta releases with normal calcium", {"results": [k(6.1), ca(2.3)]}, None, "release"),
    ("edta releases below 6.0", {"results": [k(5.9), ca(2.0)]}, None, "release"),
    ("iv calcium fall holds", {"results": [ca(1.8)], "collected_at": T1,
                               "previous": [ca(2.4, collected_at=T0)]}, "iv_fluid_contamination", "hold"),
    ("iv calcium small fall releases", {"results": [ca(2.2)], "collected_at": T1,
                                        "previous": [ca(2.4, collected_at=T0)]}, None, "release"),
    ("iv potassium rise holds", {"results": [k(7.5)], "collected_at": T1,
                                 "previous": [k(4.0, collected_at=T0)]}, "iv_fluid_contamination", "hold"),
    ("iv previous after current is not previous", {"results": [ca(2.2)], "collected_at": T0,
                                                   "previous": [ca(3.0, collected_at=T1)]}, None, "release"),
    ("no interval holds", {"results": [k(4.0, specimen="whole_blood")]}, "no_interval", "hold"),
    ("no interval releases", {"results": [k(4.0, specimen="serum")]}, None, "release"),
]

# Cases that need the test laboratory's profile (measuring range, delta check, grade mapping).
LAB_CASES: list[tuple[str, dict[str, object], str | None, str]] = [
    ("measuring range high holds", {"results": [k(10.5)]}, "measuring_range", "hold"),
    ("measuring range low holds", {"results": [k(0.5)]}, "measuring_range", "hold"),
    ("measuring range releases", {"results": [k(4.0)]}, None, "release"),
    ("delta absolute holds", {"results": [k(5.2)], "collected_at": T1,
                              "previous": [k(4.0, collected_at=T0)]}, "delta_check", "hold"),
    ("delta absolute releases", {"results": [k(4.6)], "collected_at": T1,
                                 "previous": [k(4.0, collected_at=T0)]}, None, "release"),
    ("delta outside window releases", {"results": [k(5.2)], "collected_at": T9,
                                       "previous": [k(4.0, collected_at=T0)]}, None, "release"),
    ("delta rcv holds", {"results": [mg(0.95)], "collected_at": T1,
                         "previous": [mg(0.80, collected_at=T0)]}, "delta_check", "hold"),
    ("delta rcv releases", {"results": [mg(0.85)], "collected_at": T1,
                            "previous": [mg(0.80, collected_at=T0)]}, None, "release"),
    ("grade mapped to suppress holds", {"results": [k(4.5, hemolysis="gross")]}, "hemolysis", "hold"),
]

# The haemolysis index cases: each door sends the index its own way (HL7 OBX, FHIR Observation, CSV column).
INDEX_CASES = [c for c in CASES if "hemolysis_index" in str(c[1])]
