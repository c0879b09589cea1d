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
    lab = make_profile(tmp_path, f"[rule.hemolysis]\nindex_codes = {codes}\n")
    assert main(["check-data", str(lab)]) == (0 if problem is None else 1)
    if problem is not None:
        err = capsys.readouterr().err
        assert "my-lab/verification.toml: rule.hemolysis.index_codes" in err and problem in err, err


def test_check_data_knows_the_grade_without_a_degree(tmp_path, capsys):
    ok = make_profile(tmp_path, '[rule.hemolysis.grades]\ndegree_not_stated = "review"\n')
    assert main(["check-data", str(ok)]) == 0
    (tmp_path / "other").mkdir()
    bad = make_profile(tmp_path / "other", '[rule.hemolysis.grades]\nsome = "review"\n')
    assert main(["check-data", str(bad)]) == 1
    assert "unknown grade 'some'" in capsys.readouterr().err
