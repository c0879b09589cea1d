"""The clinical safety case stays true: every linked test exists, the SOUP list matches the pins."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.server import ROOT

SAFETY_CASE = ROOT / "docs" / "clinical-safety.md"
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:::(\w+))?`")


def missing_tests(text: str, root: Path) -> list[str]:
    """Node ids in `text` whose file or test function (or class method) does not exist under `root`."""
    missing = []
    for path, first, second in NODE_ID.findall(text):
        node = f"{path}::{first}" + (f"::{second}" if second else "")
        file = root / path
        if not file.is_file():
            missing.append(node)
            continue
        tree = ast.parse(file.read_text())
        scope = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        target = scope.get(first)
        if second and isinstance(target, ast.ClassDef):
            target = next((n for n in target.body if isinstance(n, ast.FunctionDef) and n.name == second), None)
        elif second:
            target = None
        if target is None or not target.name.startswith(("test", "Test")):
            missing.append(node)
    return missing


def hazard_rows(text: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| (H\d+) \|.*$", text, re.M)}


def test_every_linked_test_exists():
    text = SAFETY_CASE.read_text()
    assert NODE_ID.findall(text)
    assert missing_tests(text, ROOT) == []


def test_every_hazard_has_a_control_and_a_test():
    rows = hazard_rows(SAFETY_CASE.read_text())
    assert len(rows) >= 10
    for hazard, row in rows.items():
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4 and cells[2], hazard
        assert NODE_ID.search(cells[3]), f"{hazard} links no test"


def test_the_issue_s_hazards_are_all_logged():
    text = SAFETY_CASE.read_text().lower()
    for hazard in ("unit conversion", "interval for age", "specimen", "pint thread race", "stale",
                   "missed critical value", "implausible value read as real", "haemolysed potassium"):
        assert hazard in text, hazard


def test_a_removed_test_would_be_reported(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_here():\n    pass\n\nclass TestBox:\n"
                                                  "    def test_inside(self):\n        pass\n")
    text = ("`tests/test_x.py::test_here` `tests/test_x.py::TestBox::test_inside` `tests/test_x.py::test_gone` "
            "`tests/test_y.py::test_here` `tests/test_x.py::TestBox::test_gone`")
    assert missing_tests(text, tmp_path) == ["tests/test_x.py::test_gone", "tests/test_y.py::test_here",
                                             "tests/test_x.py::TestBox::test_gone"]


def soup_table(text: str) -> dict[str, str]:
    section = text.split("## Third-party software (SOUP)", 1)[1]
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^\| ([A-Za-z0-9_.\-]+) \| ([^ |]+) \|", section, re.M)
            if m.group(1) != "package"}


def test_soup_list_matches_requirements():
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pinned[name.lower()] = version
    assert soup_table(SAFETY_CASE.read_text()) == pinned
