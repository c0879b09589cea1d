"""labinterp verify-report: the rates of a generated file whose expected rates are known."""

from __future__ import annotations

import re

from labinterp.cli import main
from tests.verify.report_data import EXPECTED, write


def test_report_rates_match_the_generated_file(tmp_path, capsys):
    source = write(tmp_path / "past.csv")
    report = tmp_path / "report.html"
    assert main(["verify-report", str(source), "-o", str(report), "--no-progress"]) == 0
    page = report.read_text()
    assert re.search(r'id="overall-rate">63\.9 %<', page)
    for analyte in ("potassium", "calcium"):
        total, released = EXPECTED[analyte]
        assert f"<td>{analyte}</td><td class=\"n\">{total:,}</td><td class=\"n\">{released:,}</td>" in page
    for code, count in EXPECTED["by_reason"].items():
        assert f"<tr><td>{code}</td><td class=\"n\">{count:,}</td>" in page.split('id="by-reason"')[1]
    alerts = page.split('id="alerts"')[1]
    for code, count in EXPECTED["alerts"].items():
        assert f"<tr><td>{code}</td><td class=\"n\">{count:,}</td>" in alerts
    # self-contained: no external asset, charts inline
    assert "<svg" in page and not re.search(r'(src|href)="(https?:)?//', page)
    # the thresholds in force, with their sources
    assert "cornes-2008" in page and "yang-2024" in page and "acb-2021-hi-potassium" in page
    out = capsys.readouterr().out
    assert "released 230 (63.9 %), held 130" in out
    assert len(out.splitlines()) <= 24  # one screen


def test_report_of_a_file_without_the_header_fails(tmp_path):
    source = tmp_path / "bad.csv"
    source.write_text("analyte,value\r\npotassium,4\r\n")
    assert main(["verify-report", str(source), "-o", str(tmp_path / "r.html"), "--no-progress"]) == 3


def test_report_shows_progress_when_asked(tmp_path, capsys):
    source = write(tmp_path / "past.csv", scale=4)
    assert main(["verify-report", str(source), "-o", str(tmp_path / "r.html"), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "100%" in captured.err and "rows" in captured.err
    assert "released 920 (63.9 %), held 520" in captured.out
