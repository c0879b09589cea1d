"""The `labinterp` command line: interpret, check-data, exit codes, progress bar and summary on stderr."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labinterp.cli import main
from tests.labwork.conftest import FILES, LABS, ROOT


def test_interpret_writes_the_file_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    code = main(["interpret", str(FILES / "mixed_bom_semicolon.csv"), "-o", str(out), "--no-progress"])
    assert code == 1  # finished, but some rows had errors
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "rows 15, derived 1, abnormal 6, critical 2, errors 7"
    rows = list(csv.reader(out.open(newline=""), delimiter=";"))
    assert len(rows) == 17 and rows[0][-3:] == ["error", "interval_origin", "interval_source"]


def test_interpret_exit_0_when_every_row_is_interpreted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["interpret", str(FILES / "every_unit_spelling.csv"), "-o", str(tmp_path / "o.csv")])
    assert code == 0 and "errors 0" in capsys.readouterr().err


def test_interpret_with_a_laboratory_profile(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("specimen_id,analyte,value,unit,age_years\nS,potassium,5.25,mmol/L,50\n")
    out = tmp_path / "out.csv"
    assert main(["interpret", str(source), "-o", str(out), "--lab", "example-lab", "--labs-dir", str(LABS)]) == 0
    assert list(csv.DictReader(out.open(newline="")))[0]["flag"] == "N"


@pytest.mark.parametrize("args, code, message", [
    (["interpret", "/nonexistent/file.csv", "-o", "x.csv"], 3, "cannot read /nonexistent/file.csv"),
    (["interpret", str(FILES / "oru_r01_cr.hl7"), "-o", "{tmp}/x.csv"], 3, "missing column(s)"),
    (["interpret", str(FILES / "every_unit_spelling.csv"), "-o", "x.csv", "--lab", "nowhere"], 4,
     "unknown laboratory profile 'nowhere'"),
])
def test_interpret_errors_go_to_stderr_with_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      args: list[str], code: int, message: str) -> None:
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == code
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["interpret"])
    assert exited.value.code == 2


def test_progress_bar_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "big.csv"
    source.write_text("specimen_id,analyte,value,unit\n" + "".join(f"S{i},potassium,4.{i % 10},mmol/L\n"
                                                                    for i in range(50_000)))
    assert main(["interpret", str(source), "-o", str(tmp_path / "o.csv"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "\r[" in err and "100%" in err and "50,000 rows" in err
    assert err.rstrip().endswith("rows 50000, derived 0, abnormal 0, critical 0, errors 0")


@pytest.mark.parametrize("flag", ["--progress", "--no-progress"])
def test_verify_draws_the_progress_bar_as_interpret_does(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         flag: str) -> None:
    source = tmp_path / "big.csv"
    source.write_text("patient_id,specimen_id,analyte,value,unit\n" + "".join(
        f"P{i % 50},S{i},potassium,4.{i % 10},mmol/L\n" for i in range(50_000)))
    assert main(["verify", str(source), "-o", str(tmp_path / "o.csv"), flag]) == 0
    err = capsys.readouterr().err
    assert ("\r[" in err and "100%" in err and "50,000 rows" in err) is (flag == "--progress")
    assert err.rstrip().endswith("rows 50000, released 50000, held 0, errors 0")


def test_check_data_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-data", str(LABS / "example-lab")]) == 0
    assert main(["check-data", str(LABS)]) == 0
    assert main(["check-data"]) == 0
    assert main(["check-data", str(ROOT / "reference_ranges")]) == 0
    assert capsys.readouterr().out.count("valid") == 4


def test_check_data_prints_each_problem_with_file_and_entry(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "broken-lab"
    shutil.copytree(LABS / "example-lab", lab)
    text = (lab / "intervals.toml").read_text()
    text = text.replace("low = 3.6\nhigh = 5.3", "low = 5.3\nhigh = 3.6").replace('source = "banner-k"\nadult',
                                                                                   'source = "nobody"\nadult')
    (lab / "intervals.toml").write_text(text)
    (lab / "limits.toml").write_text((lab / "limits.toml").read_text().replace("high = 6.2", "high = 5.0"))
    assert main(["check-data", str(lab)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "intervals.toml: interval[4] (potassium): 'low' must be below 'high'" in err
    assert "intervals.toml: interval[4] (potassium): 'source' names an unknown source 'nobody'" in err
    assert any(line.startswith("limits.toml: critical (potassium") and "critical high is not above" in line
               for line in err)
    assert err[-1].endswith("problem(s)")


def test_check_data_on_something_else_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-data", str(tmp_path / "nothing")]) == 3
    assert main(["check-data", str(tmp_path)]) == 3


def test_console_script_runs() -> None:
    script = Path(sys.executable).parent / "labinterp"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "labinterp.cli"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "interpret" in done.stdout and "Exit codes" in done.stdout
    done = subprocess.run([*command, "serve", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "--bind" in done.stdout


def test_the_installed_package_carries_the_reference_data() -> None:
    """`labinterp` installed from a wheel finds its data: labinterp/reference_ranges links to the
    top-level tree, and package-data names every file in it."""
    import fnmatch
    import tomllib

    from labinterp.core.knowledge import DEFAULT_DATA_DIR

    assert (ROOT / "reference_ranges").resolve() == DEFAULT_DATA_DIR
    assert (ROOT / "labinterp" / "reference_ranges").resolve() == DEFAULT_DATA_DIR
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["labinterp"]
    files = [p.name for p in DEFAULT_DATA_DIR.iterdir() if p.is_file()]
    assert "intervals.toml" in files
    unpackaged = [f for f in files if not any(fnmatch.fnmatch(f"reference_ranges/{f}", p) for p in patterns)]
    assert unpackaged == []


def test_check_data_validates_codes_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """issue 13: an unknown analyte and a duplicate system+code are named with file and entry."""
    lab = tmp_path / "coded-lab"
    shutil.copytree(LABS / "example-lab", lab)
    (lab / "codes.toml").write_text(
        '[[code]]\nsystem = "L"\ncode = "K"\nanalyte = "potassium"\n\n'
        '[[code]]\nsystem = "L"\ncode = "NA"\nanalyte = "sodium"\n\n'
        '[[code]]\nsystem = "L"\ncode = "K"\nanalyte = "calcium"\n\n'
        '[[code]]\nsystem = "LN"\ncode = "2823-3"\nanalyte = "potassium"\n\n'
        '[[code]]\nsystem = "L"\ncode = "CCA"\nanalyte = "corrected_calcium"\nunit = "furlongs"\n')
    assert main(["check-data", str(lab)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("codes.toml: code[1] (L|NA): 'analyte' names an unknown analyte 'sodium'")
               for line in err)
    assert "codes.toml: code[2] (L|K): duplicate system and code: already mapped by code[0] (L|K)" in err
    assert any(line.startswith("codes.toml: code[3] (LN|2823-3): system 'LN' is LOINC") for line in err)
    assert any("code[4] (L|CCA): 'analyte' names an unknown analyte 'corrected_calcium'" in line for line in err)
    assert "codes.toml: code[4] (L|CCA): unit 'furlongs' is not a unit the data knows" in err
