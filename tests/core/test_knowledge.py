"""Reference data is validated at load: a bad file stops start-up naming file, entry and problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labinterp.core import DataError, load_knowledge
from labinterp.core.knowledge import DEFAULT_DATA_DIR


@pytest.fixture()
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "reference_ranges"
    shutil.copytree(DEFAULT_DATA_DIR, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_default_data_loads_with_a_version(knowledge):
    assert knowledge.data_version and knowledge.disclaimer
    assert set(knowledge.analytes) >= {"calcium", "ionized_calcium", "magnesium", "potassium", "albumin"}


@pytest.mark.parametrize("file, old, new, expected", [
    ("intervals.toml", "low = 8.7\nhigh = 11.0", "low = 11.7\nhigh = 11.0", ("intervals.toml", "interval[0]",
                                                                           "'low' must be below 'high'")),
    ("intervals.toml", 'source = "mayo-ca"', 'source = "nobody"', ("intervals.toml", "interval[0]",
                                                                   "unknown source 'nobody'")),
    ("intervals.toml", 'unit = "mg/dL"', 'unit = "mg"', ("intervals.toml", "interval[0]", "cannot be converted")),
    ("intervals.toml", 'age_to = "1y"', 'age_to = "one year"', ("intervals.toml", "interval[0]", "ages must")),
    ("limits.toml", 'high = "3.17"', 'high = "2.60"', ("limits.toml", "critical (calcium",
                                                      "critical high is not above")),
    ("limits.toml", 'high_comparison = ">="', 'high_comparison = "=>"', ("limits.toml", "critical[0]",
                                                                         "must be one of")),
    ("analytes.toml", "molar_mass = 40.078", "molar_mass = -40.078", ("analytes.toml", "analyte 'calcium'",
                                                                      "must be positive")),
    ("symptoms.toml", 'system = "muscle"', 'system = "skin"', ("symptoms.toml", "symptom[0]", "must be one of")),
    ("ctcae.toml", "edges = [8.0, 7.0, 6.0]", "edges = [6.0, 7.0, 8.0]", ("ctcae.toml", "term[0]",
                                                                          "away from normal")),
    ("units.toml", 'kind = "mass"', 'kind = "volume"', ("units.toml", "unit 'mg/dL'", "must be one of")),
    # pint's default registry knows the grain; the SI definitions factors are derived from do not
    ("units.toml", 'pint = "milligram / deciliter"', 'pint = "grain / deciliter"',
     ("units.toml", "unit 'mg/dL'", "pint cannot convert")),
    ("sources.toml", 'data_version = "', 'data_versio = "', ("sources.toml", "top level", "'data_version'")),
    # refusal reasons: each key the engine writes is there, and uses only the fields it is given
    ("messages.toml", 'missing_unit = "a unit is required"\n', "", ("messages.toml", "refusal", "'missing_unit'")),
    ("messages.toml", "not a concentration; accepted units for {analyte}", "not a concentration; for {patient}",
     ("messages.toml", "refusal", "'wrong_dimension' uses ['patient']")),
    ("messages.toml", 'mass = "a mass"', 'mass = "a {mass"', ("messages.toml", "dimension", "unbalanced braces")),
    # phrases the domain puts into answers: the same checks
    ("messages.toml", 'band_from = "from {start}"\n', "", ("messages.toml", "phrase", "'band_from'")),
    ("messages.toml", 'age_years = "{count} years"', 'age_years = "{count} {unit}"',
     ("messages.toml", "phrase", "'age_years' uses ['unit']")),
])
def test_bad_data_stops_loading_with_file_entry_problem(data_copy, file, old, new, expected):
    edit(data_copy / file, old, new)
    with pytest.raises(DataError) as caught:
        load_knowledge(data_copy)
    problems = caught.value.problems
    assert any(f == expected[0] and expected[1] in entry and expected[2] in problem
               for f, entry, problem in problems), problems
    assert expected[0] in str(caught.value)


def test_refusal_reasons_are_the_data_s_words(data_copy):
    edit(data_copy / "messages.toml", 'missing_unit = "a unit is required"', 'missing_unit = "unit missing"')
    from labinterp.core import Engine, InvalidInput, Panel, ResultInput

    with pytest.raises(InvalidInput) as caught:
        Engine(load_knowledge(data_copy)).interpret(Panel((ResultInput("calcium", 9.0, ""),)))
    assert [(e.reason, e.code) for e in caught.value.errors] == [("unit missing", "missing_unit")]


def test_the_answer_s_phrases_are_the_data_s_words(data_copy):
    """Where an interval applies and why none applies are written from [phrase], not from code."""
    from labinterp.core import Engine, Panel, Patient, ResultInput

    edit(data_copy / "messages.toml", 'age_years = "{count} years"', 'age_years = "{count} ans"')
    edit(data_copy / "messages.toml", 'band_from = "from {start}"', 'band_from = "dès {start}"')
    k = load_knowledge(data_copy)
    assert k.intervals["potassium"][-1].describe() == "dès 1 ans, plasma"
    outcome = Engine(k).interpret(Panel((ResultInput("potassium", 4.0, "mmol/L", specimen="whole_blood"),),
                                        Patient(age_days=40 * 365.25)))
    assert outcome.results[0].interval_reason == ("the data has no interval for potassium in whole blood "
                                                  "at age 40 ans")


def test_unknown_key_and_bad_toml_are_refused(data_copy):
    edit(data_copy / "intervals.toml", 'analyte = "calcium"', 'analyte = "calcium"\nlow_bound = 1')
    with pytest.raises(DataError, match="unknown keys"):
        load_knowledge(data_copy)
    (data_copy / "patterns.toml").write_text("[[pattern]\n")
    with pytest.raises(DataError, match="not valid TOML"):
        load_knowledge(data_copy)


def test_a_missing_file_is_named(data_copy):
    (data_copy / "ctcae.toml").unlink()
    with pytest.raises(DataError, match=r"ctcae.toml: -: file is missing"):
        load_knowledge(data_copy)


def test_critical_limit_inside_an_infant_interval_is_refused(data_copy):
    # a children's potassium critical high of 6.0 would sit inside the >7-180 day interval (to 6.2)
    edit(data_copy / "limits.toml", 'high = "6.4"', 'high = "6.0"')
    with pytest.raises(DataError, match="critical high is not above the interval"):
        load_knowledge(data_copy)


def test_overlapping_intervals_are_refused(data_copy):
    edit(data_copy / "intervals.toml", 'age_from = "1y"\nage_to = "18y"', 'age_from = "6mo"\nage_to = "18y"')
    with pytest.raises(DataError, match="overlaps"):
        load_knowledge(data_copy)


def test_create_app_refuses_to_start_on_bad_data(data_copy):
    from labinterp.app import create_app

    edit(data_copy / "intervals.toml", "low = 9.3", "low = 19.3")
    with pytest.raises(DataError, match="intervals.toml"):
        create_app({"DATA_DIR": str(data_copy)})


def test_every_entry_cites_a_known_source(knowledge):
    cited = set()
    for rules in knowledge.intervals.values():
        cited |= {r.source for r in rules}
    for rules in knowledge.critical.values():
        cited |= {r.source for r in rules}
    cited |= {r.source for r in knowledge.implausible.values()}
    cited |= {t.source for t in knowledge.ctcae.values()}
    cited |= {p.source for p in knowledge.patterns}
    assert cited <= set(knowledge.sources)
    assert all(knowledge.sources[s].title for s in cited)
