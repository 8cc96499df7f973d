"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Chromium comes from the system (`apt-get install -y chromium`), never from Playwright's
own downloads. Without it the tests skip, unless HERALD_REQUIRE_BROWSER=1 (CI), where a
missing browser is a failure. Screenshots go to test-artifacts/screenshots/ (or to
HERALD_SCREENSHOTS).
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("HERALD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("HERALD_SCREENSHOTS", "")
    or Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
)
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"


def _unavailable(reason: str):
    if os.environ.get("HERALD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"HERALD_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install --group test)")
    # Playwright's sync API keeps an event loop on the main thread while it runs; the ORM
    # calls that tests and fixtures make between browser steps are still plain synchronous
    # code, so Django's guard against ORM calls in async code must stand aside until the
    # browser is gone (after the last test's database teardown).
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if before is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def open_page(browser, live_server):
    """open_page(viewport=DESKTOP, color_scheme="light") -> a fresh page (own cookies), closed after
    the test."""
    contexts = []

    def open_page(viewport=DESKTOP, color_scheme="light"):
        context = browser.new_context(
            viewport=viewport,
            base_url=live_server.url,
            color_scheme=color_scheme,
            device_scale_factor=1,
            locale="en-GB",
            timezone_id="Europe/Istanbul",
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def log_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def screenshot(page, name: str) -> Path:
    """A full-page screenshot named after the page and the viewport width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{page.viewport_size['width']}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
