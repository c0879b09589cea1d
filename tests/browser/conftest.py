"""Browser fixtures: a real gunicorn on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.server import ROOT, gunicorn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CASES_FILE = ROOT / "labinterp" / "web" / "static" / "cases.json"
TEST_API_KEY = "teaching-page-test-key-0001"
# One fictional laboratory profile (test data, not clinical data), so the page's laboratory picker can be tested.
LABS = Path(__file__).resolve().parent / "labs"
FIXTURE_LAB = "teaching-fixture-lab"
# Records every Content-Security-Policy violation the page causes (init scripts are the driver's, not the page's).
CSP_RECORDER = ("window.__cspViolations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")


def load_cases() -> list[dict[str, Any]]:
    return json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]


def api_call(base: str, path: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Ask the same server directly: the expected verdicts come from the API, never from the test."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def request_for(state: dict[str, str]) -> dict[str, Any]:
    """The body the page sends for a fragment state (the page's buildRequest, for the test's own API call)."""
    analytes = ["calcium", "ionized_calcium", "magnesium", "potassium", "albumin"]
    results = []
    for analyte in analytes:
        if analyte in state:
            result: dict[str, Any] = {"id": analyte, "analyte": analyte, "value": float(state[analyte]),
                                      "unit": state[f"{analyte}_unit"]}
            if state.get("hemolysis"):
                result["hemolysis"] = state["hemolysis"]
            results.append(result)
    body: dict[str, Any] = {"results": results}
    patient: dict[str, Any] = {}
    if "age" in state:
        patient["age_days" if state.get("age_unit") == "days" else "age_years"] = float(state["age"])
    if state.get("sex"):
        patient["sex"] = state["sex"]
    if patient:
        body["patient"] = patient
    if state.get("specimen"):
        body["specimen"] = state["specimen"]
    if state.get("lab"):
        body["lab"] = state["lab"]
    return body


@dataclass
class Recorder:
    """Everything one browser page did: requests, console errors, uncaught errors."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def foreign_hosts(self, base: str) -> set[str]:
        own = urlsplit(base).netloc
        return {urlsplit(url).netloc for _, url in self.requests if urlsplit(url).netloc != own}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is needed for the browser tests (.ci/run installs it)")
    return CHROMIUM


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    log_path = ROOT / "test-artifacts" / "browser-gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with gunicorn(workers=1, threads=4, env={"LABINTERP_API_KEYS": "", "LABINTERP_API_KEYS_FILE": "",
                                              "LABINTERP_TEACHING_PAGE": "on", "LABINTERP_LABS_DIR": str(LABS)},
                  log_path=log_path) as (base, _process):
        yield base


@pytest.fixture(scope="session")
def keyed_server() -> Iterator[str]:
    with gunicorn(workers=1, threads=2, env={"LABINTERP_API_KEYS": TEST_API_KEY, "LABINTERP_API_KEYS_FILE": "",
                                              "LABINTERP_TEACHING_PAGE": "on"}) as (base, _process):
        yield base


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _new_page(browser: Any, width: int, height: int) -> tuple[Any, Any, Recorder]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    record = Recorder()
    page.on("request", lambda r: record.requests.append((r.method, r.url)))
    page.on("console", lambda m: record.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: record.page_errors.append(str(e)))
    page.add_init_script(CSP_RECORDER)
    return context, page, record


@pytest.fixture()
def page_and_record(browser: Any) -> Iterator[tuple[Any, Recorder]]:
    context, page, record = _new_page(browser, 1280, 900)
    yield page, record
    context.close()


@pytest.fixture()
def new_page(browser: Any) -> Iterator[Any]:
    """A factory for more pages (another 'person' opening a shared link, a phone)."""
    contexts = []

    def make(width: int = 1280, height: int = 900) -> tuple[Any, Recorder]:
        context, page, record = _new_page(browser, width, height)
        contexts.append(context)
        return page, record

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
