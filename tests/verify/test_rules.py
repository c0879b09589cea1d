"""Every verification rule through the engine (no Flask): a case that holds and one that releases."""

from __future__ import annotations

import pytest

from labinterp.core import Engine, load_knowledge
from labinterp.core.errors import DataError, InvalidInput
from labinterp.core.verification import ORDER, verify_request
from labinterp.core.verification_data import check, load_verification
from labinterp.http.schemas import VerifySchema
from tests.verify.helpers import CASES, LAB_CASES, ca, k, make_labs

SCHEMA = VerifySchema()


@pytest.fixture(scope="module")
def lab_engine(tmp_path_factory):
    knowledge = load_knowledge(labs_dir=make_labs(tmp_path_factory.mktemp("labs")))
    return Engine(knowledge), load_verification(knowledge)


@pytest.fixture(scope="module")
def default_rules(knowledge):
    return load_verification(knowledge)


def run(engine, rules, body):
    return verify_request(engine, rules, SCHEMA.load(body))


def codes(v):
    return [r.code for r in v.reasons]


@pytest.mark.parametrize(("name", "body", "code", "disposition"), CASES, ids=[c[0] for c in CASES])
def test_default_rules(engine, default_rules, name, body, code, disposition):
    pv = run(engine, default_rules, body)
    first = pv.results[0]
    assert first.disposition == disposition
    if code is None:
        assert not [r for r in first.reasons if r.holds], codes(first)
    else:
        assert code in codes(first)


@pytest.mark.parametrize(("name", "body", "code", "disposition"), LAB_CASES, ids=[c[0] for c in LAB_CASES])
def test_laboratory_rules(lab_engine, name, body, code, disposition):
    engine, rules = lab_engine
    pv = run(engine, rules, {**body, "lab": "testlab"})
    first = pv.results[0]
    assert first.disposition == disposition
    if code is None:
        assert code not in codes(first) and not [r for r in first.reasons if r.holds]
    else:
        assert code in codes(first)


def test_laboratory_cases_release_without_the_profile(engine, default_rules):
    """The measuring range and the delta check are off by default, and the answer says so."""
    pv = run(engine, default_rules, LAB_CASES[3][1])  # the delta case
    assert pv.results[0].disposition == "release"
    assert {off.code for off in pv.rules_off} == {"measuring_range", "delta_check"}


def test_reasons_carry_the_numbers_and_source(engine, default_rules):
    pv = run(engine, default_rules, {"results": [ca(1.8)], "collected_at": "2026-03-02T08:00:00Z",
                                     "previous": [ca(2.4, collected_at="2026-03-01T08:00:00Z")]})
    (reason,) = [r for r in pv.results[0].reasons if r.code == "iv_fluid_contamination"]
    details = reason.detail()
    assert reason.action == "recollect" and reason.source == "yang-2024"
    assert details["previous"] == 2.4 and details["value"] == 1.8 and details["limit"] == -24.0
    assert details["change"] == pytest.approx(-25.0)


def test_contamination_holds_the_whole_specimen(engine, default_rules):
    pv = run(engine, default_rules, {"results": [k(4.0), ca(1.8)], "collected_at": "2026-03-02T08:00:00Z",
                                     "previous": [ca(2.4, collected_at="2026-03-01T08:00:00Z")]})
    assert [v.disposition for v in pv.results] == ["hold", "hold"]
    assert pv.results[0].reasons[0].variant == "specimen"
    assert pv.disposition == "hold"


def test_hemolysis_never_changes_value_or_flag(engine, default_rules):
    plain = run(engine, default_rules, {"results": [k(4.5)]}).outcome.results[0]
    haemolysed = run(engine, default_rules, {"results": [k(4.5, hemolysis_index=900)]}).outcome.results[0]
    assert (plain.value, plain.verdict) == (haemolysed.value, haemolysed.verdict)


def test_reasons_follow_the_stated_order(engine, default_rules):
    pv = run(engine, default_rules, {"results": [k(7.0, hemolysis_index=600), ca(1.5)]})
    listed = codes(pv.results[0])
    assert listed == sorted(listed, key=ORDER.index) and listed[0] == "critical_value"


def test_bad_previous_is_named(engine, default_rules):
    with pytest.raises(InvalidInput) as caught:
        run(engine, default_rules, {"results": [k(4.0)], "previous": [{"analyte": "potassium", "value": 4,
                                                                        "unit": "furlongs"}]})
    assert caught.value.errors[0].pointer == "/previous/0/unit"


def test_a_profile_can_switch_a_rule_off(tmp_path, engine):
    knowledge = load_knowledge(labs_dir=make_labs(tmp_path, "[rule.critical_value]\nenabled = false\n"))
    rules = load_verification(knowledge)
    pv = verify_request(Engine(knowledge), rules, SCHEMA.load({"results": [k(6.8)], "lab": "testlab"}))
    assert pv.results[0].disposition == "release"
    assert "critical_value" in {off.code for off in pv.rules_off}


def test_a_profile_can_change_a_threshold(tmp_path):
    profile = ('[rule.hemolysis]\n[[rule.hemolysis.analyte]]\nanalyte = "potassium"\nsource = "yin-2022-h-index"\n'
               'tiers = [{ from = 20, comparison = ">", action = "suppress" }]\n')
    knowledge = load_knowledge(labs_dir=make_labs(tmp_path, profile))
    rules = load_verification(knowledge)
    pv = verify_request(Engine(knowledge), rules, SCHEMA.load({"results": [k(4.0, hemolysis_index=25)],
                                                                "lab": "testlab"}))
    assert pv.results[0].disposition == "hold" and pv.results[0].reasons[0].action == "suppress"


@pytest.mark.parametrize(("profile", "problem"), [
    ("[rule.bogus]\nenabled = true\n", "unknown rule"),
    ("[rule.critical_value]\naction = \"shout\"\n", "must be one of"),
    ("[rule.delta_check]\n[[rule.delta_check.analyte]]\nanalyte = \"potassium\"\ncvi_percent = 4.0\n"
     "cvi_source = \"eflm-bv\"\n", "go together"),
    ("[rule.measuring_range]\n[[rule.measuring_range.analyte]]\nanalyte = \"potassium\"\nlow = 10\nhigh = 1\n"
     "unit = \"mmol/L\"\n", "below"),
    ("[rule.iv_fluid_contamination]\n[[rule.iv_fluid_contamination.analyte]]\nanalyte = \"calcium\"\n"
     "change_percent_at_most = 24\n", "negative"),
    ("[rule.hemolysis]\n[[rule.hemolysis.analyte]]\nanalyte = \"unobtainium\"\nsource = \"eflm-bv\"\n"
     "tiers = []\n", "unknown analyte"),
    ("[rule.delta_check]\n[[rule.delta_check.analyte]]\nanalyte = \"potassium\"\npercent_limit = 10\n"
     "source = \"nowhere\"\n", "unknown source"),
])
def test_bad_profiles_are_refused_naming_the_problem(tmp_path, profile, problem):
    knowledge = load_knowledge(labs_dir=make_labs(tmp_path, profile))
    with pytest.raises(DataError) as caught:
        load_verification(knowledge)
    assert any(problem in p[2] for p in caught.value.problems), caught.value.problems
    assert check(knowledge)


def test_default_data_is_valid(knowledge):
    assert check(knowledge) == []
