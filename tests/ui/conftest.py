"""Browser fixtures: the system Chromium driven by Playwright (no browser download; closed network).

``playwright install`` cannot run here (no internet at test time), so Playwright launches Debian's
``/usr/bin/chromium`` (override with IMMUNORAD_CHROMIUM). The flags keep Chromium from calling home, which a
closed hospital network would refuse anyway. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    path = os.environ.get("IMMUNORAD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"Chromium not found at {path}: apt-get install -y chromium (or set IMMUNORAD_CHROMIUM)")
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh context per test (own cookies), 1400 px wide, with every request and console error recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.requests = []
    tab.console_errors = []
    tab.on("request", lambda request: tab.requests.append(request.url))
    tab.on("console", lambda message: tab.console_errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    yield tab
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
