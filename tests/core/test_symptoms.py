"""Symptoms from the source articles' comparison tables, each naming its source."""

from __future__ import annotations

import pytest

from labinterp.render import v1 as render_v1
from tests.core.helpers import one

IMBALANCE = ('Can Calcium and Magnesium Cause Leg Pain? The Essential Mineral Balance, '
             'table "Comparison of Imbalance Symptoms"')
CALF = ('What Deficiency Causes Calf Spasms? Understanding the Electrolyte Link, table '
        '"Comparison of Key Deficiencies Causing Calf Spasms"')


def by_system(result):
    out = {}
    for s in result["symptoms"]:
        out.setdefault(s["system"], []).append(s["text"].lower())
    return out


def test_low_calcium_symptoms_from_both_tables(engine):
    result = one(engine, "calcium", 8.0, "mg/dL")
    systems = by_system(result)
    assert any("cramps and spasms in legs and back" in t for t in systems["muscle"])
    assert any("numbness or tingling in the extremities" in t for t in systems["nerve"])
    assert any("tingling in lips" in t for t in systems["nerve"])
    assert any("brittle nails" in t for t in systems["other"])
    assert {s["source"] for s in result["symptoms"]} == {IMBALANCE, CALF}


def test_low_magnesium_symptoms(engine):
    systems = by_system(one(engine, "magnesium", 0.6, "mmol/L"))
    assert any("twitches" in t for t in systems["muscle"])
    assert any("nocturnal" in t for t in systems["muscle"])
    assert any("irregular heartbeat" in t for t in systems["other"])
    assert any("numbness or tingling" in t for t in systems["nerve"])


def test_high_calcium_and_high_magnesium_symptoms(engine):
    hyper_ca = by_system(one(engine, "calcium", 11.0, "mg/dL"))
    assert any("confusion" in t for t in hyper_ca["nerve"]) and any("thirst" in t for t in hyper_ca["other"])
    hyper_mg = by_system(one(engine, "magnesium", 1.3, "mmol/L"))
    assert any("generalized muscle weakness" in t for t in hyper_mg["muscle"])
    assert any("blurred vision" in t for t in hyper_mg["nerve"])


def test_low_potassium_symptoms_come_from_the_calf_table(engine):
    result = one(engine, "potassium", 3.2, "mmol/L")
    systems = by_system(result)
    assert "muscle weakness" in systems["muscle"] and "nerve dysfunction" in systems["nerve"]
    assert {s["source"] for s in result["symptoms"]} == {CALF}


def test_high_potassium_cites_another_source(engine):
    result = one(engine, "potassium", 5.9, "mmol/L")
    assert result["symptoms"] and all("StatPearls" in s["source"] for s in result["symptoms"])
    assert any("not described in the seed" in n["text"] for n in result["notes"])


def test_onset_row_is_a_note_not_a_symptom(engine):
    result = one(engine, "calcium", 11.0, "mg/dL")
    assert not any("cramps" in s["text"].lower() and "not typically" in s["text"].lower() for s in result["symptoms"])
    assert any("not typically associated with cramps" in n["text"] for n in result["notes"])


def test_sources_silent_on_albumin_and_say_so(engine):
    result = one(engine, "albumin", 25, "g/L")
    assert result["symptoms"] == [] and any("do not describe" in n["text"] for n in result["notes"])


@pytest.mark.parametrize("analyte, value, unit", [("calcium", 9.5, "mg/dL"), ("potassium", 4.0, "mmol/L"),
                                                  ("magnesium", 0.9, "mmol/L"), ("ionized_calcium", 1.2, "mmol/L")])
def test_normal_results_list_no_symptoms(engine, analyte, value, unit):
    result = one(engine, analyte, value, unit)
    assert result["flag"] == "N" and result["symptoms"] == [] and result["notes"] == []


def test_every_symptom_in_the_data_names_a_source_and_a_system(knowledge):
    for symptoms in knowledge.symptoms.values():
        for s in symptoms:
            assert s.system in ("muscle", "nerve", "other") and knowledge.sources[s.source].title


def test_answer_labels_the_lists_educational_and_not_exhaustive(engine):
    from labinterp.core import Panel, ResultInput

    body = render_v1.interpret(engine, Panel(results=(ResultInput("calcium", 8.0, "mg/dL"),)))
    assert "educational" in body["symptoms_note"] and "not exhaustive" in body["symptoms_note"]
