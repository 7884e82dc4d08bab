"""Real Chromium for the console's browser tests: Debian's ``chromium`` driven by Playwright (no browser download),
and a ``page`` fixture that saves a screenshot of a failing test (tests/support/accessibility.py checks
the pages).

Used as a pytest plugin by the test modules that need it (``pytest_plugins = ["tests.support.browser"]``;
they must not import it).
Without the browser or Playwright the tests skip, and fail with CI=true (as the other system services do).
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("EVENTGW_SCREENSHOTS")
                   or Path(__file__).resolve().parents[2] / "var" / "test-screenshots")
"""Where a failing browser test leaves its screenshot (var/ is never committed; EVENTGW_SCREENSHOTS elsewhere)."""


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install 'eventgw[test]')"
    if not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; scripts/test installs it)"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Keep each phase's report on the test item, so that the ``page`` fixture knows whether its test failed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    missing = _unavailable()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page; when the test fails, a screenshot of the page as it was is saved
    in SCREENSHOTS and its path is printed."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid) + ".png")
        tab.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failing page: {path}")
    context.close()
