"""The one browser test: Debian Chromium driven by playwright uses each tab of the running app once.

Screenshots go to test-output/screenshots/. Playwright never downloads a browser here: it drives /usr/bin/chromium.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page(app_url: str) -> Iterator:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian chromium is missing in CI: `make setup` should have installed it")
        pytest.skip("Debian chromium not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(120_000)
            pg.goto(app_url)
            pg.get_by_text("headscope — interpretability workbench").first.wait_for()
            yield pg
        finally:
            browser.close()


def _pick_model(pg, name: str) -> None:
    box = pg.get_by_label("Model", exact=True)
    box.click()
    box.fill(name)
    pg.get_by_role("option", name=name, exact=True).click()


def _open_tab(pg, title: str) -> None:
    pg.get_by_role("tab", name=title, exact=True).click()


def test_model_tab_loads_a_tiny_model(page) -> None:
    _pick_model(page, "tiny-llama")
    _open_tab(page, "Model")
    page.get_by_role("button", name="Load model").click()
    page.get_by_text("LlamaForCausalLM, 2 layers × 4 heads").wait_for()
    page.screenshot(path=str(SHOTS / "model_tab.png"), full_page=True)
