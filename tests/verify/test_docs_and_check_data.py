"""docs/verification.md's example profile is valid, and `labinterp check-data` names a bad verification.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labinterp.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification.md"
SOURCES = ('[[source]]\nid = "my-analyser-k"\ntitle = "t"\nurl = ""\n\n'
           '[[source]]\nid = "my-eflm-k"\ntitle = "t"\nurl = ""\n')


def make_profile(root: Path, verification: str) -> Path:
    lab = root / "my-lab"
    lab.mkdir()
    (lab / "profile.toml").write_text('title = "My lab"\ndata_version = "1"\n')
    (lab / "sources.toml").write_text(SOURCES)
    (lab / "verification.toml").write_text(verification)
    return lab


def test_the_documented_profile_is_valid(tmp_path, capsys):
    example = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert main(["check-data", str(make_profile(tmp_path, example))]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_data_names_the_problem(tmp_path, capsys):
    lab = make_profile(tmp_path, "[rule.delta_check]\nenabled = true\n[[rule.delta_check.analyte]]\n"
                                 "analyte = \"potassium\"\ncvi_percent = 4.0\ncvi_source = \"my-eflm-k\"\n")
    assert main(["check-data", str(lab)]) == 1
    err = capsys.readouterr().err
    assert "my-lab/verification.toml: rule.delta_check.analyte[0]:" in err and "go together" in err


@pytest.mark.parametrize(("codes", "problem"), [
    ('[{ system = "L", code = "HI" }]', None),
    ('[{ system = "L" }]', "rule.hemolysis.index_codes[0]"),
    ('[{ system = "L", code = " " }]', "'code' must not be empty"),
    ('[{ system = "L", code = "HI" }, { system = "L", code = "HI" }]', "names L|HI twice"),
    ('[{ system = "http://loinc.org", code = "2823-3" }]', "is the code of an analyte, not of the haemolysis index"),
    ('[{ system = "L", code = "HI", colour = "red" }]', "colour"),
])
def test_check_data_validates_the_index_codes(tmp_path, capsys, codes, problem):
    check_data_says(tmp_path, capsys, f"[rule.hemolysis]\nindex_codes = {codes}\n", "rule.hemolysis.index_codes",
                    problem)


def check_data_says(tmp_path, capsys, verification: str, entry: str, problem: str | None) -> None:
    """check-data on a profile with this verification.toml: valid (problem None), or this problem of the entry."""
    lab = make_profile(tmp_path, verification)
    assert main(["check-data", str(lab)]) == (0 if problem is None else 1)
    if problem is not None:
        err = capsys.readouterr().err
        assert f"my-lab/verification.toml: {entry}" in err and problem in err, err


def test_check_data_knows_the_grade_without_a_degree(tmp_path, capsys):
    ok = make_profile(tmp_path, '[rule.hemolysis.grades]\ndegree_not_stated = "review"\n')
    assert main(["check-data", str(ok)]) == 0
    (tmp_path / "other").mkdir()
    bad = make_profile(tmp_path / "other", '[rule.hemolysis.grades]\nsome = "review"\n')
    assert main(["check-data", str(bad)]) == 1
    assert "unknown grade 'some'" in capsys.readouterr().err


@pytest.mark.parametrize(("words", "problem"), [
    ('"window.hours" = "{hours} Stunden"\n"word.not_stated" = "nicht angegeben"', None),
    ('"window.hours" = "{days} days"', "'window.hours' uses ['days']; it may use ['hours']"),
    ('"window.any" = "any {interval"', "'window.any': unbalanced braces"),
    ('"word.yes" = 1', "'word.yes' must be a string"),
])
def test_check_data_validates_the_words_put_into_reasons(tmp_path, capsys, words, problem):
    check_data_says(tmp_path, capsys, f"[text]\n{words}\n", "text", problem)


def test_the_words_put_into_reasons_are_the_laboratorys(tmp_path):
    """A delta check's window and a previous result without a time, in the laboratory's words."""
    from labinterp.app import create_app

    make_profile(tmp_path, '[text]\n"window.hours" = "{hours} Stunden"\n"word.not_stated" = "nicht angegeben"\n'
                           '[rule.delta_check]\nenabled = true\nwindow_hours = 48\n[[rule.delta_check.analyte]]\n'
                           'analyte = "potassium"\nabsolute_limit = 1.0\nunit = "mmol/L"\nsource = "my-analyser-k"\n')
    client = create_app({"TESTING": True, "LABS_DIR": str(tmp_path)}).test_client()
    body = {"lab": "my-lab", "collected_at": "2026-03-02T08:00:00Z",
            "results": [{"analyte": "potassium", "value": 5.9, "unit": "mmol/L"}],
            "previous": [{"analyte": "potassium", "value": 4.0, "unit": "mmol/L",
                          "collected_at": "2026-03-01T08:00:00Z"}]}
    reasons = client.post("/v1/verify", json=body).get_json()["results"][0]["verification"]["reasons"]
    delta = next(r for r in reasons if r["code"] == "delta_check")
    assert "within 48 Stunden" in delta["text"], delta
    fall = {"lab": "my-lab", "results": [{"analyte": "calcium", "value": 1.7, "unit": "mmol/L"}],
            "previous": [{"analyte": "calcium", "value": 2.4, "unit": "mmol/L"}]}  # no times
    reasons = client.post("/v1/verify", json=fall).get_json()["results"][0]["verification"]["reasons"]
    iv_fluid = next(r for r in reasons if r["code"] == "iv_fluid_contamination")
    assert "since the previous result of nicht angegeben" in iv_fluid["text"], iv_fluid
