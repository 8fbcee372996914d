"""Real-browser tests of the dashboard: Debian's chromium driven by Playwright for Python (the system browser, by
its executable_path: nothing is downloaded). Without them installed these tests skip, saying so; in CI (CI=true)
they fail instead: `make test` installs both (the `browser` target and the dev extra)."""

from __future__ import annotations

import os
import shutil

import pytest


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the browser tests: make test installs chromium and playwright)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    """A headless chromium, launched by Playwright from the system's executable."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[dev]')")
    exe = chromium_path()
    if exe is None:
        missing("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()
