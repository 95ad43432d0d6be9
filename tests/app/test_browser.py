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


def _visible(locator):
    return locator.filter(visible=True).first


def _fill_number(pg, label: str, value: str) -> None:
    box = _visible(pg.get_by_label(label, exact=True))
    box.fill(value)
    box.press("Enter")


def _fill_slider(pg, label: str, value: str) -> None:
    _fill_number(pg, f"number input for {label}", value)


def _wait_plot(pg, timeout_ms: int = 240_000) -> None:
    # plotly draws into .js-plotly-plot; a rendered figure has at least one trace group
    _visible(pg.locator(".js-plotly-plot .main-svg")).wait_for(timeout=timeout_ms)


def test_model_tab_loads_a_tiny_model(page) -> None:
    _pick_model(page, "tiny-llama")
    _open_tab(page, "Model")
    page.get_by_role("button", name="Load model").click()
    page.get_by_text("LlamaForCausalLM, 2 layers × 4 heads").wait_for()
    page.screenshot(path=str(SHOTS / "model_tab.png"), full_page=True)


def test_locality_tab_moves_the_dial_and_draws_the_heatmap(page) -> None:
    _open_tab(page, "Attention & locality")
    _fill_slider(page, "λ (locality)", "0.6")
    _visible(page.get_by_role("button", name="Analyse", exact=True)).click()
    _wait_plot(page)
    _visible(page.get_by_text("mean_entropy_bits")).wait_for()
    page.screenshot(path=str(SHOTS / "locality_tab.png"), full_page=True)


def test_circuits_tab_runs_a_custom_task_on_a_tiny_model(page) -> None:
    import json

    _open_tab(page, "Circuits")
    task = _visible(page.get_by_label("Task", exact=True))
    task.click()
    page.get_by_role("option", name="custom", exact=True).click()
    spec = {
        "name": "letters",
        "positive": [
            {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
            {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        ],
        "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}],
    }
    editor = _visible(page.locator(".cm-content"))
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    editor.fill(json.dumps(spec))
    _fill_slider(page, "Prompt pairs", "6")
    _fill_slider(page, "SAE epochs", "10")
    _visible(page.get_by_role("button", name="Find circuit", exact=True)).click()
    _wait_plot(page)
    page.screenshot(path=str(SHOTS / "circuits_tab.png"), full_page=True)


def test_steering_tab_shows_unsteered_and_steered(page) -> None:
    _open_tab(page, "Steering")
    _fill_number(page, "Layer", "1")
    _fill_slider(page, "New tokens", "4")
    _visible(page.get_by_role("button", name="Steer", exact=True)).click()
    _visible(page.get_by_text("effect")).wait_for(timeout=240_000)
    page.screenshot(path=str(SHOTS / "steering_tab.png"), full_page=True)


def test_decoding_tab_compares_two_strategies(page) -> None:
    _open_tab(page, "Decoding")
    for name in ("jacobi", "layer_skip"):
        box = _visible(page.get_by_label(name, exact=True))
        if box.is_checked():
            box.uncheck()
    _fill_slider(page, "Max new tokens", "8")
    _visible(page.get_by_role("button", name="Compare", exact=True)).click()
    _wait_plot(page)
    _visible(page.get_by_text("ngram")).wait_for()
    page.screenshot(path=str(SHOTS / "decoding_tab.png"), full_page=True)
