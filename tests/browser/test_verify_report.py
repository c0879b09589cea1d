"""The verification report renders in Chromium: rates shown, charts drawn, nothing fetched from elsewhere."""

from __future__ import annotations

from labinterp.cli import main
from tests.verify.report_data import EXPECTED, write


def test_the_report_renders_in_chromium(tmp_path, page_and_record, screenshots):
    page, record = page_and_record
    report = tmp_path / "report.html"
    assert main(["verify-report", str(write(tmp_path / "past.csv")), "-o", str(report), "--no-progress"]) == 0
    url = report.as_uri()
    page.goto(url)
    assert page.locator("#overall-rate").inner_text() == EXPECTED["rate"]
    assert page.locator("svg").count() == 4
    bars = page.locator("rect.bar")
    assert bars.count() >= 3
    assert bars.first.bounding_box()["width"] > 0  # drawn, not only present
    assert page.locator("#thresholds tr").count() == 10  # header + the nine rules
    assert [u for _, u in record.requests if u != url] == []
    assert record.page_errors == [] and record.console_errors == []
    page.screenshot(path=str(screenshots / "verify-report.png"), full_page=True)
