"""A real browser over the session's mesh and web console: Debian's Chromium,
headless, driven by selenium (``make browsers`` installs it). Screenshots of
every step land in var/screenshots/ (test artifacts)."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,900")


class Browser:
    """One person's browser: a fresh profile, so a fresh session cookie."""

    def __init__(self, web_url: str, name: str):
        self.web_url = web_url
        self.name = name
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.steps = 0

    def open(self, path_or_url: str) -> None:
        url = path_or_url if path_or_url.startswith("http") else f"{self.web_url}{path_or_url}"
        self.driver.get(url)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def fill(self, **fields) -> None:
        for name, value in fields.items():
            box = self.find(f"[name='{name}']")
            box.clear()
            box.send_keys(value)

    def click(self, css: str, navigates: bool = True) -> None:
        """Click; when it loads a page (a link, a form), wait until the new one is there,
        so the next look is not at the page being left."""
        self.driver.execute_script("window.__leaving = true;")  # a mark only the old page has
        self.find(css).click()
        if navigates:
            wait_until(self._new_page, timeout=20, interval=0.05, what=f"the page after {css}")

    def _new_page(self) -> bool:
        try:
            return self.driver.execute_script(
                "return window.__leaving === undefined && document.readyState === 'complete';")
        except WebDriverException:  # caught mid-navigation: look again
            return False

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    def wait_text(self, css: str, expected: str, timeout: float = 20) -> str:
        """Wait (through page loads) until ``css`` shows ``expected``; its text."""
        def shown():
            text = self._text_or_none(css)
            return text if text is not None and expected.lower() in text.lower() else None

        return wait_until(shown, timeout=timeout, interval=0.1, what=f"{expected!r} in {css}")

    def _text_or_none(self, css: str) -> str | None:
        try:
            found = self.all(css)
            return found[0].text if found else None
        except StaleElementReferenceException:  # the page changed under us: look again
            return None

    @property
    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.driver.current_url)

    def shot(self, step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.steps += 1
        path = SCREENSHOTS / f"{self.name}-{self.steps:02d}-{step}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def web(running_mesh):
    return running_mesh.web_url


@pytest.fixture
def browsers(running_mesh, request):
    """``browsers("ada")``: a new browser; all quit after the test."""
    opened = []

    def open_browser(who: str) -> Browser:
        browser = Browser(running_mesh.web_url, f"{request.node.name}-{who}")
        opened.append(browser)
        return browser

    yield open_browser
    failed = getattr(request.node, "rep_call", None)
    for browser in opened:
        if failed is not None and failed.failed:
            browser.shot("failed")
        browser.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the call's report on the test item (the fixture screenshots a failure)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
