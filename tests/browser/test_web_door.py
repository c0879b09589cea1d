"""The teaching page's door with the test client: what it serves, and that it serves nothing foreign."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.browser.conftest import load_cases, request_for

STATIC = Path(__file__).resolve().parents[2] / "labinterp" / "web" / "static"
TEMPLATE = Path(__file__).resolve().parents[2] / "labinterp" / "web" / "templates" / "index.html"
# The one URL-looking string allowed in the assets: the SVG XML namespace name, which is never fetched.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'()<>]*""")


class PageAudit(HTMLParser):
    """Collects what a Content-Security-Policy `default-src 'self'` would refuse, and every reference."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.references: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on"):
                self.problems.append(f"inline handler {name} on <{tag}>")
            if name == "style":
                self.problems.append(f"inline style on <{tag}>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            if not names.get("src"):
                self.problems.append("inline <script>")
            self._in_script = True
        for name in ("src", "href", "action"):
            if names.get(name):
                self.references.append(str(names[name]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def audit(html: str) -> PageAudit:
    parser = PageAudit()
    parser.feed(html)
    return parser


def foreign_urls(text: str) -> set[str]:
    return {u for u in URL.findall(text) if u not in ALLOWED_URLS}


def test_the_page_is_served_at_the_root(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    for asset in ("/web/static/page.js", "/web/static/page.css", "/web/static/cases.json",
                  "/web/static/favicon.svg"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/web/static/nothing-here.js").status_code == 404


def test_the_page_has_nothing_a_strict_policy_refuses(client):
    page = audit(client.get("/").get_data(as_text=True))
    assert page.problems == []
    assert all(ref.startswith(("/", "#")) and not ref.startswith("//") for ref in page.references), page.references


def test_the_audit_catches_what_the_policy_refuses():
    bad = audit('<div style="color:red" onclick="x()"><script>alert(1)</script><style>p{}</style>'
                '<script src="https://cdn.example.org/lib.js"></script></div>')
    assert len(bad.problems) == 4
    assert "https://cdn.example.org/lib.js" in bad.references


@pytest.mark.parametrize("name", ["page.js", "page.css", "favicon.svg", "cases.json"])
def test_no_asset_names_another_host(name):
    assert foreign_urls((STATIC / name).read_text(encoding="utf-8")) == set()


def test_the_template_names_no_other_host():
    assert foreign_urls(TEMPLATE.read_text(encoding="utf-8")) == set()


def test_the_url_check_can_fail():
    assert foreign_urls("fetch('https://fonts.googleapis.com/css?family=X'); url(//cdn.example.org/f.woff2)") == {
        "https://fonts.googleapis.com/css?family=X", "//cdn.example.org/f.woff2"}


def test_the_page_holds_no_clinical_numbers():
    """Intervals, limits and verdicts come from the API: the script holds no clinical constant."""
    script = (STATIC / "page.js").read_text(encoding="utf-8")
    for number in ("3.5", "5.2", "2.8", "6.2", "8.6", "10.0", "0.7", "1.1", "40.078", "24.305", "39.098"):
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", script) is None, number


def test_each_ready_made_case_is_a_valid_request(client):
    analytes = {a["id"]: a for a in client.get("/v1/analytes").get_json()["analytes"]}
    cases = load_cases()
    assert len({c["id"] for c in cases}) == len(cases) == 4
    for case in cases:
        state = case["state"]
        for analyte in analytes:
            if analyte in state:
                assert state[f"{analyte}_unit"] in {u["ucum"] for u in analytes[analyte]["accepted_units"]}
        response = client.post("/v1/interpret", json=request_for(state))
        assert response.status_code == 200, (case["id"], response.get_json())


def test_cases_hold_inputs_only():
    """A case is data to type in, not a claim: no flag, verdict or interval in the file."""
    data = json.loads((STATIC / "cases.json").read_text(encoding="utf-8"))
    allowed = {"calcium", "ionized_calcium", "magnesium", "potassium", "albumin", "age", "age_unit", "sex",
               "specimen", "hemolysis", "lab"}
    for case in data["cases"]:
        assert set(case) == {"id", "title", "summary", "state"}
        assert {key.removesuffix("_unit") for key in case["state"]} <= allowed


def test_the_page_can_be_turned_off():
    from labinterp.app import create_app

    app = create_app({"TESTING": True, "TEACHING_PAGE": "off"})
    client = app.test_client()
    assert client.get("/").status_code == 404
    assert client.get("/web/static/page.js").status_code == 404
    assert client.get("/v1/analytes").status_code == 200
