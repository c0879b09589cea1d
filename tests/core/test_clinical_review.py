"""Issue 12 at the knowledge level: age-band edges, both unit families, precision at converted edges."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from labinterp.core import Patient, load_knowledge
from labinterp.core.errors import DataError
from labinterp.core.knowledge import DEFAULT_DATA_DIR
from tests.core.helpers import one

K = load_knowledge()
FACTOR = K.factors


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    target = tmp_path / "reference_ranges"
    shutil.copytree(DEFAULT_DATA_DIR, target)
    return target


# ------------------------------------------------------------------ age-band edges, every band in the data
def _bands():
    for rules in K.intervals.values():
        for rule in rules:
            yield pytest.param(rule, rule.applies_to_age, id=f"interval-{rule.entry}")
    for analyte, rules in K.critical.items():
        for rule in rules:
            yield pytest.param(rule, rule.applies, id=f"critical-{analyte}-{rule.describe()}")
    for code, caveat in K.caveats.items():
        yield pytest.param(caveat, lambda age, c=caveat: c.applies(c.sex if c.sex != "any" else None, age),
                           id=f"caveat-{code}")


@pytest.mark.parametrize("band, holds", list(_bands()))
def test_both_sides_of_every_age_edge(band, holds):
    assert holds(band.age_from) is band.age_from_included
    assert holds(math.nextafter(band.age_from, math.inf))
    if band.age_from > 0:
        assert not holds(math.nextafter(band.age_from, -math.inf))
    if band.age_to != math.inf:
        assert holds(band.age_to) is band.age_to_included
        assert holds(math.nextafter(band.age_to, -math.inf))
        assert not holds(math.nextafter(band.age_to, math.inf))


def _shared_edges():
    for analyte, rules in K.intervals.items():
        for rule in rules:
            for specimen in rule.specimens:
                for age in (rule.age_from, rule.age_to):
                    if age != math.inf:
                        yield pytest.param(analyte, specimen, rule.sex, age, id=f"{analyte}-{specimen}-{age:g}d")


@pytest.mark.parametrize("analyte, specimen, sex, age", list(_shared_edges()))
def test_every_edge_age_has_at_most_one_interval(analyte, specimen, sex, age):
    claim = [r.entry for r in K.intervals[analyte] if r.applies(specimen, None if sex == "any" else sex, age)]
    assert len(claim) <= 1, claim


def test_critical_bands_cover_every_age_once():
    for analyte, rules in K.critical.items():
        for age in {r.age_from for r in rules} | {r.age_to for r in rules if r.age_to != math.inf}:
            for probe in (math.nextafter(age, -math.inf), age, math.nextafter(age, math.inf)):
                if probe >= 0:
                    assert sum(r.applies(probe) for r in rules) == 1, (analyte, probe)


@pytest.mark.parametrize("age_days, value, flag", [
    (7, 6.0, "H"), (7.0001, 6.0, "N"),       # "0-7 days": day 7 is in the first band (3.2-5.7)
    (180, 5.5, "N"), (180.0001, 5.5, "H"),   # ">7days-180 days": day 180 is in the second (3.4-6.2)
])
def test_hunterdon_edges_through_the_engine(engine, age_days, value, flag):
    assert one(engine, "potassium", value, "mmol/L", patient=Patient(age_days=age_days))["flag"] == flag


def test_critical_applies_honours_its_edges():
    newborn, child, adult = K.critical["potassium"]
    assert newborn.applies(0) and newborn.applies(27.999) and not newborn.applies(28)
    assert child.applies(28) and not child.applies(18 * 365.25) and adult.applies(18 * 365.25)
    assert (newborn.high_edge("molar").value, child.high_edge("molar").value, adult.high_edge("molar").value) \
        == (7.8, 6.4, 6.2)


def test_newborn_critical_potassium_through_the_engine(engine):
    at_edge = one(engine, "potassium", 7.8, "mmol/L", patient=Patient(age_days=27))
    assert at_edge["flag"] == "HH" and at_edge["critical"]
    assert one(engine, "potassium", 7.8, "mmol/L", patient=Patient(age_days=28))["flag"] == "HH"  # 6.4 from 28 d
    assert one(engine, "potassium", 6.5, "mmol/L", patient=Patient(age_days=27))["flag"] == "H"


# ------------------------------------------------------------------ stated precision
@pytest.mark.parametrize("analyte, figures", [
    ("magnesium", ("0.70", "1.10")), ("ionized_calcium", ("1.11", "1.30")),
])
def test_adult_interval_figures_keep_their_stated_decimals(analyte, figures):
    rule = next(r for r in K.intervals[analyte] if r.adult_default and r.unit == "mmol/L")
    low, high = rule.low_side.figures[0], rule.high_side.figures[0]
    assert (low.text, high.text) == figures and low.decimals == high.decimals == 2


# ------------------------------------------------------------------ magnesium 1.7 mg/dL against 0.70-1.10 mmol/L
MG = FACTOR[("magnesium", "mg/dL")]
ADULT_MG = next(r for r in K.intervals["magnesium"] if r.adult_default)


def test_magnesium_low_edge_for_a_mass_result_is_adjusted_for_precision():
    edge = ADULT_MG.low_edge("mass")
    assert edge.comparison == "<" and edge.value == pytest.approx(0.695)
    assert edge.basis.precision_adjusted and edge.basis.stated == "0.70" and edge.basis.decimals == 2
    assert not edge.beyond(1.7 * MG)              # 0.6994 mmol/L reads 0.70 at two decimals: inside
    assert edge.beyond(1.68 * MG)                 # 0.6912 reads 0.69: low
    assert not edge.beyond(edge.value)            # 0.695 rounds half up to 0.70: inside
    assert edge.beyond(math.nextafter(edge.value, -math.inf))


def test_magnesium_low_edge_for_a_molar_result_is_exact():
    edge = ADULT_MG.low_edge("molar")
    assert edge.comparison == "<" and edge.value == 0.70 and not edge.basis.precision_adjusted
    assert edge.beyond(0.6994) and not edge.beyond(0.70)


def test_upper_interval_edge_adjusted_is_inclusive_at_the_half_step():
    edge = ADULT_MG.high_edge("mass")
    assert edge.comparison == ">=" and edge.value == pytest.approx(1.105)
    assert edge.beyond(edge.value) and not edge.beyond(math.nextafter(edge.value, -math.inf))
    assert ADULT_MG.high_edge("equivalent") is ADULT_MG.high_edge("molar")


# ------------------------------------------------------------------ critical limits stated in both families
CA = FACTOR[("calcium", "mg/dL")]
CHILD_CA, ADULT_CA = K.critical["calcium"]


def test_adult_calcium_critical_is_compared_with_the_figure_of_the_results_family():
    molar, mass = ADULT_CA.low_edge("molar"), ADULT_CA.low_edge("mass")
    assert (molar.basis.stated, molar.basis.stated_unit, molar.comparison) == ("1.65", "mmol/L", "<=")
    assert (mass.basis.stated, mass.basis.stated_unit, mass.comparison) == ("6.6", "mg/dL", "<=")
    assert not molar.basis.precision_adjusted and not mass.basis.precision_adjusted
    assert molar.beyond(1.65) and not molar.beyond(math.nextafter(1.65, math.inf))       # 1.65 mmol/L is LL
    assert mass.beyond(6.6 * CA) and not mass.beyond(6.61 * CA)                          # 6.61 mg/dL is not
    high = ADULT_CA.high_edge("molar")
    assert high.basis.stated == "3.22" and high.beyond(3.22) and not high.beyond(math.nextafter(3.22, -math.inf))


def test_child_calcium_critical_stated_in_mmol_only_is_precision_adjusted_for_mg_dl():
    edge = CHILD_CA.low_edge("mass")
    # round(x, 2) <= 1.62  <=>  x < 1.625 mmol/L
    assert edge.comparison == "<" and edge.value == pytest.approx(1.625) and edge.basis.precision_adjusted
    assert edge.beyond(6.5 * CA) and not edge.beyond(6.52 * CA)
    assert not edge.beyond(edge.value) and edge.beyond(math.nextafter(edge.value, -math.inf))
    high = CHILD_CA.high_edge("mass")        # round(x, 2) >= 3.17  <=>  x >= 3.165
    assert high.comparison == ">=" and high.value == pytest.approx(3.165)
    assert high.beyond(high.value) and not high.beyond(math.nextafter(high.value, -math.inf))


@pytest.mark.parametrize("comparison, stated, expected_cmp, expected", [
    ("<=", "1.0", "<", 1.05), ("<", "1.0", "<", 0.95), (">=", "4.9", ">=", 4.85), (">", "4.9", ">=", 4.95),
])
def test_each_comparison_maps_to_its_rounding_equivalent(comparison, stated, expected_cmp, expected):
    from labinterp.core.knowledge import EdgeSide, Figure
    side = EdgeSide("critical", comparison, (Figure(float(stated), stated, 1, "mg/dL", "mass", 1.0, "s"),),
                    "mg/dL")
    edge = side.edge("molar")
    assert edge.comparison == expected_cmp and edge.value == pytest.approx(expected)
    # the adjusted edge says exactly what comparing the value rounded to one decimal says
    for probe in (expected - 1e-9, expected, expected + 1e-9):
        rounded = math.floor(probe * 10 + 0.5) / 10
        truth = {"<=": rounded <= float(stated), "<": rounded < float(stated),
                 ">=": rounded >= float(stated), ">": rounded > float(stated)}[comparison]
        assert edge.beyond(probe) is truth, probe


# ------------------------------------------------------------------ CTCAE's two columns
def test_ctcae_hypercalcaemia_grades_with_the_printed_mmol_column():
    g2, g3, g4 = K.ctcae[("corrected_calcium", "high")].grade_edges("molar")
    assert (g2.basis.stated, g3.basis.stated, g4.basis.stated) == ("2.9", "3.1", "3.4")
    assert g2.comparison == ">" and not g2.beyond(2.9) and g2.beyond(math.nextafter(2.9, math.inf))
    m2 = K.ctcae[("corrected_calcium", "high")].grade_edges("mass")[0]
    assert m2.basis.stated_unit == "mg/dL" and not m2.beyond(11.5 * CA) and m2.beyond(11.51 * CA)
    # 2.9 mmol/L is 11.63 mg/dL: past the mg/dL edge, not the mmol/L one
    assert m2.beyond(2.9) and not g2.beyond(2.9)


def test_ctcae_hypermagnesaemia_mmol_column_keeps_its_printed_decimals():
    edges = K.ctcae[("magnesium", "high")].grade_edges("molar")
    assert [e.basis.stated for e in edges] == ["1.23", "1.23", "3.30"]
    assert not edges[0].beyond(1.23) and edges[0].beyond(math.nextafter(1.23, math.inf))


def test_ctcae_edges_printed_only_in_mmol_are_precision_adjusted_for_mass_results():
    g2 = K.ctcae[("potassium", "high")].grade_edges("mass")[0]
    # round(x, 1) > 5.5  <=>  x >= 5.55
    assert g2.basis.precision_adjusted and g2.comparison == ">=" and g2.value == pytest.approx(5.55)
    assert g2.beyond(g2.value) and not g2.beyond(math.nextafter(g2.value, -math.inf))
    low = K.ctcae[("ionized_calcium", "low")].grade_edges("mass")[2]
    # round(x, 1) < 0.8  <=>  x < 0.75
    assert low.comparison == "<" and low.value == pytest.approx(0.75)
    assert low.beyond(math.nextafter(0.75, -math.inf)) and not low.beyond(0.75)


def test_edge_basis_is_json_ready():
    basis = ADULT_MG.low_edge("mass").basis.as_json()
    assert basis == {"figure": "interval low", "stated": "0.70", "stated_unit": "mmol/L", "stated_family": "molar",
                     "result_family": "mass", "decimals": 2, "precision_adjusted": True, "comparison": "<",
                     "canonical": pytest.approx(0.695), "canonical_unit": "mmol/L", "source": "rcpa-aacb"}


# ------------------------------------------------------------------ validation of the new fields
def test_also_in_the_same_family_is_refused(data):
    _edit(data / "limits.toml", 'also = { unit = "mmol/L", low = "1.65", high = "3.22", source = "kost-1990" }',
          'also = { unit = "mg/dL", low = "6.6", high = "12.9", source = "kost-1990" }')
    with pytest.raises(DataError, match="other unit family"):
        load_knowledge(data)


def test_a_shared_edge_age_left_to_no_band_is_refused(data):
    _edit(data / "intervals.toml", 'ages_stated = ">7days-180 days"', 'ages_stated = "changed"')
    _edit(data / "intervals.toml", 'age_to_included = true\nages_stated = "0-7 days"',
          'age_to_included = false\nages_stated = "0-7 days"')
    with pytest.raises(DataError, match="belongs to neither band"):
        load_knowledge(data)


def test_bands_sharing_an_included_edge_overlap(data):
    _edit(data / "intervals.toml", 'age_from_included = false\nage_to_included = true\nages_stated = ">7days',
          'age_from_included = true\nage_to_included = true\nages_stated = ">7days')
    with pytest.raises(DataError, match="overlaps"):
        load_knowledge(data)


def test_a_stated_figure_must_be_a_plain_number(data):
    _edit(data / "limits.toml", 'low = "1.62"', 'low = "1,62"')
    with pytest.raises(DataError, match="written plainly"):
        load_knowledge(data)


# ------------------------------------------------------------------ corrected calcium, caveats, sources, patterns
@pytest.mark.parametrize("age_days, albumin_flag, holds", [
    (18 * 365.25, "L", True), (math.nextafter(18 * 365.25, 0), "L", False), (40 * 365.25, "N", False),
    (40 * 365.25, "H", False), (None, "L", False), (40 * 365.25, "LL", True),
])
def test_corrected_calcium_applies_to_adults_with_low_albumin(age_days, albumin_flag, holds):
    assert K.corrected_calcium.applies(age_days, albumin_flag) is holds
    assert K.corrected_calcium.slope == 0.8 and "brenner-rector-8" in K.corrected_calcium.slope_sources
    assert K.corrected_calcium.original_source == "payne-1973"


@pytest.mark.parametrize("sex, years, shown", [
    ("female", 15, True), ("female", math.nextafter(15, 0), False), ("female", 49.99, True), ("female", 50, False),
    ("male", 30, False), (None, 30, False),
])
def test_pregnancy_caveat_for_women_of_reproductive_age(sex, years, shown):
    codes = [c.code for c in K.caveats_for(sex, years * 365.25)]
    assert ("pregnancy_not_modelled" in codes) is shown
    assert "pregnancy_not_modelled" in K.messages and K.messages["pregnancy_not_modelled"]["source"] == "sdg-371"


def test_sources_and_texts_say_what_their_sources_say():
    assert K.sources["kost-1990"].url.endswith("/2296127/")
    assert K.sources["kost-1991"].url.endswith("/1881742/")
    assert "hmc.testcatalog.org/show/K" in K.sources["hunterdon-k"].url
    assert K.messages["hemolysis"]["source"] == "hunterdon-k"
    mg_k = next(p for p in K.patterns if p.id == "low_magnesium_low_potassium")
    assert "does not necessarily cause hypokalemia" in mg_k.text and mg_k.source == "huang-kuo-2007"
    whole_blood = [r for r in K.intervals["ionized_calcium"] if "whole_blood" in r.specimens]
    assert {r.source for r in whole_blood} == {"arup-ica-wb"}
    plasma = next(r for r in K.intervals["ionized_calcium"] if "plasma" in r.specimens)
    assert plasma.borrowed and plasma.source == "medlineplus-ica"
    assert all(c.comparison_note for rules in K.critical.values() for c in rules)


def test_a_critical_high_sharing_a_value_with_the_interval_is_refused(data):
    # children's potassium >= 6.2 against the >7-180 day interval up to 6.2 (inclusive): 6.2 would be both
    _edit(data / "limits.toml", 'high = "6.4"', 'high = "6.2"')
    with pytest.raises(DataError, match="critical high is not above the interval"):
        load_knowledge(data)


def test_a_strict_critical_high_at_the_interval_edge_is_accepted(data):
    # > 6.2 shares no value with an interval that ends at 6.2 inclusive, in either unit family
    _edit(data / "limits.toml", 'high = "6.4"\nhigh_comparison = ">="', 'high = "6.2"\nhigh_comparison = ">"')
    child = load_knowledge(data).critical["potassium"][1]
    assert child.high == 6.2 and not child.high_inclusive
    assert child.high_edge("mass").comparison == ">=" and child.high_edge("mass").value == pytest.approx(6.25)


def test_the_example_laboratory_profile_loads():
    profile = load_knowledge(labs_dir=Path(__file__).parents[2] / "examples" / "labs").profiles["example-lab"]
    assert profile.critical["potassium"][1].applies(200)


def _all_sides():
    for rules in K.intervals.values():
        for rule in rules:
            for side in (rule.low_side, rule.high_side):
                if side is not None:
                    yield pytest.param(side, id=f"{rule.entry}-{side.figure}")
    for analyte, rules in K.critical.items():
        for rule in rules:
            for side in (rule.low_side, rule.high_side):
                if side is not None:
                    yield pytest.param(side, id=f"{analyte}-{rule.describe()}-{side.figure}")
    for (analyte, direction), term in K.ctcae.items():
        for side in term.sides:
            yield pytest.param(side, id=f"{analyte}-{direction}-{side.figure}")


@pytest.mark.parametrize("side", list(_all_sides()))
@pytest.mark.parametrize("family", ["mass", "molar"])
def test_both_sides_of_every_figure_in_both_families(side, family):
    edge = side.edge(family)
    away = -math.inf if edge.comparison in ("<", "<=") else math.inf
    toward = -away
    assert edge.beyond(edge.value) is edge.inclusive
    assert edge.beyond(math.nextafter(edge.value, away))
    assert not edge.beyond(math.nextafter(edge.value, toward))
    own = side.figure_in(family)
    if own is not None:  # the source states it in this family: compared exactly, as stated
        assert not edge.basis.precision_adjusted and edge.value == own.canonical
        assert edge.comparison == side.beyond_when
    else:  # converted: the canonical value rounded to the stated decimals, in the stated unit, decides
        stated = side.figures[0]
        assert edge.basis.precision_adjusted and edge.basis.decimals == stated.decimals
        step = 10.0 ** -stated.decimals
        stated_steps = round(stated.value / step)
        for probe in (edge.value * (1 - 1e-9), edge.value * (1 + 1e-9)):
            shown_steps = math.floor(probe / stated.factor / step + 0.5)  # reported at the stated decimals
            truth = {"<": shown_steps < stated_steps, "<=": shown_steps <= stated_steps,
                     ">": shown_steps > stated_steps, ">=": shown_steps >= stated_steps}
            assert edge.beyond(probe) is truth[side.beyond_when], (probe, shown_steps)


@pytest.mark.parametrize("applies_albumin, warned", [("below_interval", True), ("any", False)])
def test_the_albumin_warning_follows_the_data(data, applies_albumin, warned):
    """corrected_calcium.toml's applies_albumin decides the warning on a corrected value from a normal albumin,
    in the engine and in the file path alike."""
    import io

    from labinterp.core.columnar import ColumnarInterpreter
    from labinterp.core.engine import Engine
    from labinterp.core.model import Panel, ResultInput
    from labinterp.files.csvfile import CsvJob

    _edit(data / "corrected_calcium.toml", 'applies_albumin = "below_interval"',
          f'applies_albumin = "{applies_albumin}"')
    engine = Engine(load_knowledge(data))
    outcome = engine.interpret(Panel((ResultInput("calcium", 9.0, "mg/dL"), ResultInput("albumin", 4.0, "g/dL")),
                                     Patient(), None, None))
    (derived,) = outcome.derived
    assert ("corrected_calcium_albumin_not_low" in {n.code for n in derived.outcome.notes}) is warned
    text = b"".join(CsvJob(ColumnarInterpreter(engine), io.BytesIO(
        b"specimen_id,analyte,value,unit\r\ns1,calcium,9.0,mg/dL\r\ns1,albumin,4.0,g/dL\r\n"))).decode()
    assert ("corrected_calcium_albumin_not_low" in text.splitlines()[-1]) is warned
