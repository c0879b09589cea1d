"""The teaching page in real Chromium against a real gunicorn: verdicts from the API, bars, cases, links."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.browser.conftest import FIXTURE_LAB, TEST_API_KEY, Recorder, api_call, load_cases, request_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
CASES = load_cases()
API_PATHS = {"/v1/analytes", "/v1/reference-intervals", "/v1/interpret"}
ANALYTES = ["calcium", "ionized_calcium", "magnesium", "potassium", "albumin"]


# ----------------------------------------------------------------------- helpers
def open_page(page: Any, base: str, fragment: str = "") -> None:
    page.goto(base + "/" + (("#" + fragment) if fragment else ""))
    settle(page)


def settle(page: Any) -> None:
    """Wait until the page has shown the answer to its latest state (no timer, no request under way)."""
    page.wait_for_selector("body[data-ready='true']:not([data-pending])", state="attached")


def fragment_state(page: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).fragment))


def shown_flags(page: Any) -> dict[str, str]:
    return page.eval_on_selector_all(
        "article.result-card", "cards => Object.fromEntries(cards.map(c => [c.dataset.analyte, c.dataset.flag]))")


def assert_clean(page: Any, record: Recorder, allow_console: tuple[str, ...] = ()) -> None:
    assert record.page_errors == []
    assert [m for m in record.console_errors if not any(a in m for a in allow_console)] == []
    assert page.evaluate("window.__cspViolations") == []


def box_center_x(locator: Any) -> float:
    box = locator.bounding_box()
    return box["x"] + box["width"] / 2


def four_significant(x: float) -> str:
    return format(float(f"{x:.4g}"), "g")


# ----------------------------------------------------------------------- loading, pickers, typing
def test_unit_pickers_offer_every_unit_the_api_accepts(server, page_and_record):
    page, record = page_and_record
    open_page(page, server)
    analytes = [a for a in api_call(server, "/v1/analytes")["analytes"] if not a["derived"]]
    assert [a["id"] for a in analytes] == ANALYTES
    for analyte in analytes:
        offered = page.eval_on_selector_all(f"#unit-{analyte['id']} option", "os => os.map(o => o.value)")
        assert offered == [u["ucum"] for u in analyte["accepted_units"]]
        # Each value box is found by its visible label (what a screen reader announces).
        assert page.get_by_label(analyte["display"], exact=True).get_attribute("id") == f"value-{analyte['id']}"
        unit_label = f"Unit for {analyte['display'].lower()}"
        assert page.get_by_role("combobox", name=unit_label, exact=True).get_attribute("id") == f"unit-{analyte['id']}"
    assert page.locator("#empty").is_visible()
    assert_clean(page, record)


def test_typing_shows_the_api_verdict_without_a_reload(server, page_and_record):
    page, record = page_and_record
    open_page(page, server)
    page.evaluate("window.__sameDocument = 'yes'")
    page.fill("#value-potassium", "2.9")
    settle(page)
    expected = api_call(server, "/v1/interpret", request_for({"potassium": "2.9", "potassium_unit": "mmol/L"}))
    result = expected["results"][0]
    assert shown_flags(page) == {"potassium": result["flag"]}
    assert page.locator("#result-potassium .flag").inner_text() == f"{result['flag']}: {result['flag_display']}"
    assert page.locator("#disclaimer").inner_text().endswith(expected["disclaimer"])
    assert page.evaluate("window.__sameDocument") == "yes"  # no reload
    assert fragment_state(page)["potassium"] == "2.9"
    documents = [url for method, url in record.requests if urlsplit(url).path == "/"]
    assert len(documents) == 1
    assert ("POST", server + "/v1/interpret") in record.requests
    # Emptying the field removes the result.
    page.fill("#value-potassium", "")
    settle(page)
    assert shown_flags(page) == {}
    assert "potassium" not in fragment_state(page)
    assert_clean(page, record)


def test_changing_the_unit_reinterprets_in_the_new_unit(server, page_and_record):
    page, record = page_and_record
    open_page(page, server, "magnesium=2.0&magnesium_unit=mmol%2FL")
    molar = api_call(server, "/v1/interpret", request_for({"magnesium": "2.0", "magnesium_unit": "mmol/L"}))
    assert shown_flags(page) == {"magnesium": molar["results"][0]["flag"]} == {"magnesium": "H"}
    page.select_option("#unit-magnesium", "mg/dL")
    settle(page)
    mass = api_call(server, "/v1/interpret", request_for({"magnesium": "2.0", "magnesium_unit": "mg/dL"}))
    assert shown_flags(page) == {"magnesium": mass["results"][0]["flag"]} == {"magnesium": "N"}
    assert fragment_state(page)["magnesium_unit"] == "mg/dL"
    assert_clean(page, record)


# ----------------------------------------------------------------------- the bar
@pytest.mark.parametrize(("analyte", "value", "unit", "side"), [
    ("potassium", "2.9", "mmol/L", "below"),
    ("potassium", "4.2", "mmol/L", "within"),
    ("potassium", "5.8", "mmol/L", "above"),
    ("magnesium", "1.2", "mg/dL", "below"),
    ("magnesium", "2.0", "mg/dL", "within"),
    ("magnesium", "3.0", "mg/dL", "above"),
    ("calcium", "10.8", "mg/dL", "above"),
])
def test_the_marker_sits_on_the_right_side_of_the_interval(server, page_and_record, analyte, value, unit, side):
    page, record = page_and_record
    open_page(page, server, f"{analyte}={value}&{analyte}_unit={unit}&age=40")
    bar = page.locator(f"svg.range-bar[data-analyte='{analyte}']")
    normal = bar.locator("rect.zone-normal").bounding_box()
    marker = box_center_x(bar.locator("line.marker"))
    if side == "below":
        assert marker < normal["x"]
    elif side == "above":
        assert marker > normal["x"] + normal["width"]
    else:
        assert normal["x"] < marker < normal["x"] + normal["width"]
    # The API agrees with the drawing.
    answer = api_call(server, "/v1/interpret", request_for({analyte: value, f"{analyte}_unit": unit, "age": "40"}))
    result = answer["results"][0]
    assert {"below": "hypo", "within": "normal", "above": "hyper"}[side] == result["classification"]
    # Interval edges in the typed unit are the canonical edges / the conversion factor.
    factor = result["basis"]["conversion"]["factor"]
    interval = result["reference_interval"]
    low_label = bar.locator("text.edge-low").text_content()
    high_label = bar.locator("text.edge-high").text_content()
    if interval["stated"]["unit"] == unit:
        assert low_label == four_significant(interval["stated"]["low"])
    else:
        assert low_label == four_significant(interval["low"] / factor)
        assert bar.locator("text.edge-low-canonical").text_content() == four_significant(interval["low"])
    assert high_label.endswith(unit)
    # The marker's label gives the value in the typed unit and, when it differs, the canonical unit.
    label = bar.locator("text.marker-label").text_content()
    assert label.startswith(f"{four_significant(float(value))} {unit}")
    if unit != result["value"]["unit"]:
        assert label.endswith(f"{four_significant(result['value']['value'])} {result['value']['unit']}")
    assert_clean(page, record)


def test_each_bar_has_a_text_alternative_with_value_interval_and_verdict(server, page_and_record):
    page, record = page_and_record
    open_page(page, server, "potassium=2.9&potassium_unit=mmol%2FL&magnesium=1.2&magnesium_unit=mg%2FdL&age=60")
    potassium = page.get_by_role("img", name="Potassium 2.9 mmol/L. Reference interval")
    name = potassium.evaluate("svg => svg.querySelector('title').textContent")
    assert "Reference interval 3.5 to 5.2 mmol/L" in name and "Verdict: Low" in name
    magnesium = page.get_by_role("img", name="Magnesium 1.2 mg/dL (0.4937 mmol/L). Reference interval")
    assert magnesium.count() == 1
    assert_clean(page, record)


# ----------------------------------------------------------------------- ready-made cases
CASE_POINTS = {
    # What each case is there to show, as the API answers it.
    "low-magnesium-low-potassium":
        lambda answer: "low_magnesium_low_potassium" in {p["id"] for p in answer["patterns"]},
    "haemolysed-high-potassium": lambda answer: "hemolysis" in {w["code"] for w in answer["results"][0]["warnings"]},
    "newborn-potassium": lambda answer: answer["results"][0]["reference_interval"]["applies_to"].startswith("birth"),
    "low-calcium-low-albumin": lambda answer: [d["analyte"] for d in answer["derived"]] == ["corrected_calcium"],
}


def test_the_four_cases_of_the_issue_are_offered():
    assert set(CASE_POINTS) == {case["id"] for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_each_ready_made_case_shows_the_api_answer(server, page_and_record, screenshots, case):
    page, record = page_and_record
    open_page(page, server)
    page.get_by_role("button", name=re.compile(re.escape(case["title"]))).click()
    settle(page)
    page.screenshot(path=str(screenshots / f"case-{case['id']}.png"), full_page=True)
    assert fragment_state(page) == case["state"]
    assert page.get_by_role("button", name=re.compile(re.escape(case["title"]))).get_attribute("aria-pressed") == "true"
    answer = api_call(server, "/v1/interpret", request_for(case["state"]))
    assert CASE_POINTS[case["id"]](answer)
    assert shown_flags(page) == {r["analyte"]: r["flag"] for r in answer["results"] + answer["derived"]}
    shown_patterns = page.eval_on_selector_all(".pattern", "ps => ps.map(p => p.dataset.pattern)")
    assert shown_patterns == [p["id"] for p in answer["patterns"]]
    for result in answer["results"] + answer["derived"]:
        card = page.locator(f"#result-{result['analyte']}")
        codes = card.locator(".warning").evaluate_all("ws => ws.map(w => w.dataset.code)")
        assert codes == [w["code"] for w in result["warnings"]]
        ctcae = card.locator(".ctcae").inner_text()
        grade = f"grade {result['ctcae']['grade']}" if result["ctcae"] else "not graded"
        assert ctcae.startswith(grade)
    assert page.locator("#disclaimer").inner_text().endswith(answer["disclaimer"])
    assert_clean(page, record)


def test_how_was_this_decided_shows_the_reasoning(server, page_and_record):
    page, record = page_and_record
    case = next(c for c in CASES if c["id"] == "newborn-potassium")
    open_page(page, server)
    page.get_by_role("button", name=re.compile(case["title"])).click()
    settle(page)
    details = page.locator("#result-potassium details.how")
    assert details.get_attribute("open") is None
    details.locator("summary").click()
    page.wait_for_function("() => location.hash.includes('how=potassium')")
    answer = api_call(server, "/v1/interpret", request_for(case["state"]))["results"][0]
    text = details.inner_text()
    assert answer["basis"]["rule"] in text
    assert answer["reference_interval"]["applies_to"] in text
    assert answer["reference_interval"]["source"] in text
    assert answer["critical_limits"]["source"] in text
    assert "age 3 days" in text and "specimen plasma" in text
    used = details.locator("tr.used").inner_text()
    assert answer["reference_interval"]["applies_to"] in used
    assert details.locator("tr.used").count() == 1
    # A result in another unit shows the conversion arithmetic with the API's factor.
    page.fill("#value-magnesium", "1.2")
    page.select_option("#unit-magnesium", "mg/dL")
    settle(page)
    page.locator("#result-magnesium details.how summary").click()
    magnesium = api_call(server, "/v1/interpret", request_for({**case["state"], "magnesium": "1.2",
                                                               "magnesium_unit": "mg/dL"}))["results"][0]
    factor = magnesium["basis"]["conversion"]["factor"]
    assert f"1.2 mg/dL x {factor} = 0.4937 mmol/L" in page.locator("#result-magnesium details.how").inner_text()
    page.wait_for_function("() => location.hash.includes('how=magnesium%2Cpotassium')")
    assert_clean(page, record)


def test_a_laboratory_profile_changes_the_interval_and_says_so(server, page_and_record):
    page, record = page_and_record
    open_page(page, server, "potassium=5.15&potassium_unit=mmol%2FL&age=40")
    assert page.locator("#lab-field").is_visible()
    default = api_call(server, "/v1/interpret", request_for({"potassium": "5.15", "potassium_unit": "mmol/L",
                                                             "age": "40"}))["results"][0]
    assert shown_flags(page) == {"potassium": default["flag"]}
    page.select_option("#lab", FIXTURE_LAB)
    settle(page)
    state = {"potassium": "5.15", "potassium_unit": "mmol/L", "age": "40", "lab": FIXTURE_LAB}
    answer = api_call(server, "/v1/interpret", request_for(state))["results"][0]
    assert answer["reference_interval"]["origin"] == "laboratory"
    assert answer["flag"] != default["flag"]
    assert shown_flags(page) == {"potassium": answer["flag"]}
    assert fragment_state(page)["lab"] == FIXTURE_LAB
    page.locator("#result-potassium details.how summary").click()
    how = page.locator("#result-potassium details.how")
    text = how.inner_text()
    assert f"laboratory profile {FIXTURE_LAB}" in text and "the laboratory profile's own" in text
    assert how.locator("tr.used").count() == 1
    assert answer["reference_interval"]["source"] in how.locator("tr.used").inner_text()
    assert any(urlsplit(url).query == f"lab={FIXTURE_LAB}" for _, url in record.requests)
    assert_clean(page, record)


# ----------------------------------------------------------------------- links
def test_a_shared_link_restores_the_page(server, page_and_record, new_page):
    page, record = page_and_record
    open_page(page, server)
    page.fill("#value-calcium", "11.5")
    page.select_option("#unit-calcium", "mg/dL")
    page.fill("#value-ionized_calcium", "1.5")
    page.fill("#age", "70")
    page.select_option("#sex", "female")
    settle(page)
    page.locator("#result-calcium details.how summary").click()
    page.wait_for_function("() => location.hash.includes('how=calcium')")
    link = page.url
    first = shown_flags(page)
    assert set(first) == {"calcium", "ionized_calcium"}

    other, other_record = new_page()
    other.goto(link)
    settle(other)
    assert shown_flags(other) == first
    assert other.input_value("#value-calcium") == "11.5"
    assert other.input_value("#unit-calcium") == "mg/dL"
    assert other.input_value("#age") == "70"
    assert other.input_value("#sex") == "female"
    assert other.locator("#result-calcium details.how").get_attribute("open") is not None
    # The values travelled in the fragment only: no request the browser made carries them.
    for _, url in other_record.requests:
        assert "11.5" not in url and "#" not in url
    assert_clean(other, other_record)


def test_changing_the_fragment_in_place_updates_the_page(server, page_and_record):
    page, record = page_and_record
    open_page(page, server, "potassium=4.0&potassium_unit=mmol%2FL")
    assert shown_flags(page) == {"potassium": "N"}
    page.evaluate("location.hash = 'potassium=7.1&potassium_unit=mmol%2FL'")
    page.wait_for_selector("#result-potassium[data-flag='HH']")
    settle(page)
    assert page.input_value("#value-potassium") == "7.1"
    assert_clean(page, record)


def test_back_returns_to_the_previous_case(server, page_and_record):
    page, record = page_and_record
    open_page(page, server)
    first, second = CASES[0], CASES[2]
    page.get_by_role("button", name=re.compile(re.escape(first["title"]))).click()
    settle(page)
    page.get_by_role("button", name=re.compile(re.escape(second["title"]))).click()
    settle(page)
    assert fragment_state(page) == second["state"]
    page.go_back()
    page.wait_for_function("() => location.hash.includes('magnesium=')")
    settle(page)
    assert fragment_state(page) == first["state"]
    assert set(shown_flags(page)) == {"magnesium", "potassium"}
    assert page.input_value("#value-magnesium") == first["state"]["magnesium"]
    assert_clean(page, record)


# ----------------------------------------------------------------------- sources and requests
SYMPTOM_PANELS = [c["state"] for c in CASES] + [
    {"calcium": "12.0", "calcium_unit": "mg/dL", "magnesium": "3.4", "magnesium_unit": "mg/dL", "age": "40"},
]


@pytest.mark.parametrize("state", SYMPTOM_PANELS, ids=[f"panel{i}" for i in range(len(SYMPTOM_PANELS))])
def test_every_symptom_shown_names_its_source(server, page_and_record, state):
    page, record = page_and_record
    fragment = "&".join(f"{k}={v}" for k, v in state.items())
    open_page(page, server, fragment.replace("/", "%2F"))
    answer = api_call(server, "/v1/interpret", request_for(state))
    expected = [(s["text"], s["source"]) for r in answer["results"] for s in r["symptoms"]]
    shown = page.locator("li.symptom").evaluate_all(
        "items => items.map(li => [li.querySelector('.symptom-text').textContent,"
        " li.querySelector('cite.source').textContent])")
    assert sorted(map(tuple, shown)) == sorted(expected)
    assert all(source.strip() for _, source in shown)
    groups = page.locator("ul.symptoms").evaluate_all("ls => ls.map(l => l.dataset.system)")
    assert set(groups) <= {"muscle", "nerve", "other"}
    assert_clean(page, record)


def test_the_page_requests_nothing_but_its_own_server(server, page_and_record):
    page, record = page_and_record
    open_page(page, server)
    for case in CASES:
        page.get_by_role("button", name=re.compile(re.escape(case["title"]))).click()
        settle(page)
    page.fill("#value-ionized_calcium", "1.1")
    settle(page)
    for details in page.locator("details.how summary").all():
        details.click()
    assert record.requests, "the recorder saw no request"
    assert record.foreign_hosts(server) == set()
    api_paths = {urlsplit(url).path for _, url in record.requests if urlsplit(url).path.startswith("/v1")}
    assert api_paths <= API_PATHS
    assert {"/v1/analytes", "/v1/interpret"} <= api_paths
    others = {urlsplit(url).path for _, url in record.requests} - api_paths
    assert all(path == "/" or path.startswith("/web/static/") for path in others), others
    # Values go in POST bodies, never in a URL the server would log.
    assert all(method == "POST" for method, url in record.requests if urlsplit(url).path == "/v1/interpret")
    assert all(not urlsplit(url).query for _, url in record.requests)
    assert_clean(page, record)


def test_the_foreign_host_check_can_fail(server, page_and_record):
    """The recorder used above does see a request to another host (aborted before it leaves the browser)."""
    page, record = page_and_record
    page.route("http://192.0.2.1/**", lambda route: route.abort())
    page.goto("about:blank")
    page.evaluate("fetch('http://192.0.2.1/x').then(() => 'sent', () => 'refused')")
    assert "192.0.2.1" in record.foreign_hosts(server)


# ----------------------------------------------------------------------- errors
def test_bad_input_is_named_at_its_field(server, page_and_record):
    page, record = page_and_record
    open_page(page, server)
    page.fill("#value-magnesium", "abc")
    settle(page)
    assert page.locator("#error-magnesium").inner_text() == "Magnesium: must be a number"
    assert page.get_attribute("#value-magnesium", "aria-invalid") == "true"
    assert not any(urlsplit(url).path == "/v1/interpret" for _, url in record.requests)
    page.fill("#value-magnesium", "")
    page.fill("#value-potassium", "4.0")
    settle(page)
    assert shown_flags(page) == {"potassium": "N"}
    page.fill("#value-calcium", "-1")
    settle(page)
    assert shown_flags(page) == {}  # the refused panel leaves no older answer on screen
    error = page.locator("#error-calcium").inner_text()
    assert error.startswith("/results/0/value:") and "greater than or equal to 0" in error
    assert page.get_attribute("#value-calcium", "aria-invalid") == "true"
    # A decimal comma is read as a decimal point.
    page.fill("#value-calcium", "2,1")
    settle(page)
    assert page.get_attribute("#value-calcium", "aria-invalid") is None
    assert set(shown_flags(page)) == {"calcium", "potassium"}
    assert page.locator("#result-calcium .typed-value").inner_text() == "2.1 mmol/L"
    assert_clean(page, record, allow_console=("status of 422",))


def test_an_implausible_value_is_shown_as_not_classified(server, page_and_record):
    page, record = page_and_record
    open_page(page, server, "potassium=25&potassium_unit=mmol%2FL")
    card = page.locator("#result-potassium")
    assert card.get_attribute("data-flag") == ""
    assert card.locator(".classification").inner_text().startswith("indeterminate")
    assert card.locator(".warning[data-code='implausible']").count() == 1
    marker = box_center_x(card.locator("line.marker"))
    implausible = card.locator("rect.zone-implausible").last.bounding_box()
    assert marker > implausible["x"]
    assert_clean(page, record)


# ----------------------------------------------------------------------- keyboard, labels, widths, CSP
def test_keyboard_alone_runs_a_case_and_opens_the_reasoning(server, page_and_record):
    page, record = page_and_record
    open_page(page, server)

    def tab_to(predicate: str, limit: int = 80) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"(() => {{ const e = document.activeElement; return {predicate}; }})()"):
                return
        raise AssertionError(f"Tab never reached {predicate}")

    tab_to("e.classList.contains('case-button') && e.dataset.case === 'haemolysed-high-potassium'")
    page.keyboard.press("Enter")
    settle(page)
    assert shown_flags(page) == {"potassium": "HH"}
    tab_to("e.id === 'value-magnesium'")
    page.keyboard.type("1.9")
    page.keyboard.press("Enter")  # submits the form
    settle(page)
    assert set(shown_flags(page)) == {"magnesium", "potassium"}
    tab_to("e.tagName === 'SUMMARY' && e.parentElement.dataset.analyte === 'potassium'", limit=200)
    page.keyboard.press("Enter")
    assert page.locator("#result-potassium details.how").get_attribute("open") is not None
    assert_clean(page, record)


def test_every_control_has_a_label(server, page_and_record):
    page, record = page_and_record
    open_page(page, server, "potassium=3.1&potassium_unit=mmol%2FL")
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll('input, select, textarea'))
        .filter(e => !(e.labels && e.labels.length && e.labels[0].textContent.trim()) && !e.getAttribute('aria-label'))
        .map(e => e.id || e.name)""")
    assert unlabelled == []
    nameless_buttons = page.evaluate("""() => Array.from(document.querySelectorAll('button, summary'))
        .filter(b => !b.textContent.trim()).length""")
    assert nameless_buttons == 0
    bars = page.locator("svg.range-bar")
    assert bars.count() == 1 and bars.get_attribute("role") == "img"
    assert_clean(page, record)


def test_the_page_fits_a_phone_and_a_projector(server, new_page, screenshots):
    phone, record = new_page(375, 812)
    case = CASES[-1]
    fragment = "&".join(f"{k}={v}" for k, v in case["state"].items()).replace("/", "%2F")
    open_page(phone, server, fragment)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    for box in phone.locator("svg.range-bar").evaluate_all("bs => bs.map(b => b.getBoundingClientRect().right)"):
        assert box <= 375
    phone.screenshot(path=str(screenshots / "phone-375.png"), full_page=True)
    assert_clean(phone, record)

    projector, record = new_page(1920, 1080)
    open_page(projector, server, fragment + "&big=1")
    assert projector.evaluate("document.body.classList.contains('projector')")
    assert projector.is_checked("#projector")
    projector.uncheck("#projector")
    assert "big" not in fragment_state(projector)
    projector.check("#projector")
    assert fragment_state(projector)["big"] == "1"
    projector.locator("#results-heading").scroll_into_view_if_needed()
    projector.screenshot(path=str(screenshots / "projector-1920.png"))
    assert_clean(projector, record)


def test_the_page_breaks_no_content_security_policy(server, page_and_record):
    page, record = page_and_record
    response = page.goto(server + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    settle(page)
    page.get_by_role("button", name=re.compile(re.escape(CASES[0]["title"]))).click()
    settle(page)
    assert page.evaluate("window.__cspViolations") == []
    # The recorder does catch a violation: an inline style attribute is refused under the policy.
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("() => window.__cspViolations.length > 0")


# ----------------------------------------------------------------------- a service with API keys
def test_the_page_asks_for_a_key_when_the_service_needs_one(keyed_server, page_and_record):
    page, record = page_and_record
    page.goto(keyed_server + "/")
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#api-key", "not-the-right-key-000")
    page.press("#api-key", "Enter")
    page.wait_for_selector("#key-form:not([hidden])")
    assert "did not accept" in page.locator("#key-why").inner_text()
    page.fill("#api-key", TEST_API_KEY)
    page.press("#api-key", "Enter")
    settle(page)
    page.get_by_role("button", name=re.compile(re.escape(CASES[0]["title"]))).click()
    settle(page)
    expected = api_call(keyed_server, "/v1/interpret", request_for(CASES[0]["state"]),
                        headers={"X-API-Key": TEST_API_KEY})
    assert shown_flags(page) == {r["analyte"]: r["flag"] for r in expected["results"]}
    assert TEST_API_KEY not in page.url
    assert_clean(page, record, allow_console=("status of 401",))
