"""docs/verification.md's example profile is valid, and `labinterp check-data` names a bad verification.toml."""

from __future__ import annotations

import re
from pathlib import Path

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
