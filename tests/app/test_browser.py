"""The browser test: Debian Chromium driven by playwright uses the running app the way a researcher does.

On the default model: click a cell of the entropy grid → the selection bar shows the head (→ the steering and
circuits tabs use it: their owners add `test_steering_uses_the_selection` / `test_circuits_ablates_the_selection`
after `test_entropy_cell_click_selects_the_head`, reading the bar with `_selected_heads`); hover a token of the
pattern view → its attention; cancel a long run, then run another view; export the session, reload, import it →
the same selection and results. Then every other tab once (on a tiny model), a screenshot of every tab under
test-output/screenshots/, and a scan that no visible text is a JSON list of token ids.
Playwright never downloads a browser here: it drives /usr/bin/chromium. Tests share one page, in file order
(the `page` fixture is in tests/conftest.py, the helpers that drive it in tests/browser/ui.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.browser.ui import SHOTS, TITLE, click, fill_number, open_tab, refused, set_text, visible

pytestmark = [pytest.mark.browser, pytest.mark.default_model]
DEFAULT_MODEL = "smollm2-135m"
TINY = "tiny-llama"
ID_LIST = re.compile(r"\[\s*\d+\s*(?:,\s*\d+\s*){4,}\]")  # five or more integers in brackets: ids on screen
SAVED: dict[str, str] = {}
SHORT = "The cat sat on the mat. It was warm."
NEW_TOKENS = "New tokens (1 … 48)"  # the Steering tab's field (a typed number, checked on the server)


# ---- helpers -----------------------------------------------------------------------------------------------------
def _pick_model(pg, name: str) -> None:
    box = pg.get_by_label("Model", exact=True)
    box.click()
    box.fill(name)
    pg.get_by_role("option", name=name, exact=True).click()


def _selected_heads(pg) -> str:
    return pg.locator("#hs-selection textarea, #hs-selection input").first.input_value()


def _wait_selected(pg, text: str) -> None:
    pg.wait_for_function(
        "t => { const e = document.querySelector('#hs-selection textarea, #hs-selection input'); "
        "return e && e.value === t; }",
        arg=text,
    )


def _wait_plot_in_tab(pg, timeout_ms: int = 240_000) -> None:
    """A plotly figure drawn in the visible tab (a result: empty plots have no .main-svg)."""
    visible(pg.locator("[role=tabpanel] .js-plotly-plot .main-svg")).wait_for(timeout=timeout_ms)


def _shot(pg, name: str) -> None:
    pg.wait_for_timeout(400)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


# Each text of each shown head grid: its right edge and the SVG's width (both in the SVG's own units).
GRID_TEXTS = """() => [...document.querySelectorAll('.hs-grid-svg')]
  .filter((svg) => svg.getBoundingClientRect().width > 0)
  .flatMap((svg) => [...svg.querySelectorAll('text')].filter((t) => !t.getAttribute('transform'))
    .map((t) => [t.textContent, t.getBBox().x + t.getBBox().width, svg.viewBox.baseVal.width]))"""


def _n_tokens(text: str) -> int:
    from headscope.app.state import STORE

    return int(STORE.get(DEFAULT_MODEL).tokenize(text).shape[1])


def _long_text(chars: int) -> str:
    from headscope.data import excerpt_text

    return excerpt_text()[:chars]


# ---- the default model -------------------------------------------------------------------------------------------
def test_model_tab_loads_the_default_model(page) -> None:
    open_tab(page, "Model")
    click(page, "Load model")
    page.get_by_text("LlamaForCausalLM, 30 layers × 9 heads").wait_for()
    _shot(page, "model_tab")


def test_entropy_cell_click_selects_the_head(page) -> None:
    open_tab(page, "Attention & locality")
    click(page, "Analyse")
    cell = page.locator('#hs-entropy-grid rect[data-cell="9.4"]')
    cell.wait_for(timeout=180_000)
    cell.hover()
    tip = page.locator("#hs-entropy-grid .hs-tip")
    assert re.match(r"layer 9, head 4: \d+\.\d\d bits", tip.inner_text())
    cell.click()
    _wait_selected(page, "9.4")
    page.locator('#hs-entropy-grid .hs-selected[data-head="9.4"]').wait_for()
    # a second head by typing, in the grammar
    set_text(page, "Selected heads (L.H, L.*, *.H)", "9.4, 12.1")
    page.locator("#hs-selection textarea, #hs-selection input").first.press("Enter")
    page.locator('#hs-entropy-grid .hs-selected[data-head="12.1"]').wait_for()
    SAVED["summary"] = visible(page.get_by_text("mean attention entropy")).inner_text()
    _shot(page, "locality_tab")


# Owners of the steering and circuits tabs add their steps here (the selection holds 9.4, 12.1), e.g.
# def test_steering_uses_the_selection(page) -> None: ... assert "9.4" in <the steered result's text>


def test_steering_uses_the_selection(page) -> None:
    """Contrastive steering at the selected heads' outputs: the result names them; the strips show token text."""
    open_tab(page, "Steering")
    visible(page.get_by_label("the selected heads' outputs", exact=True)).check()
    set_text(page, "Prompts (one a line)", "My day at work was")
    fill_number(page, NEW_TOKENS, "4")
    click(page, "Steer")
    line = visible(page.get_by_text("Steered at heads"))
    line.wait_for(timeout=400_000)
    assert "9.4, 12.1" in line.inner_text()
    visible(page.locator("#hs-contrastive-steered .hs-tok")).wait_for()
    visible(page.locator("#hs-contrastive-table")).wait_for()
    visible(page.get_by_label("a layer's residual stream", exact=True)).check()  # back to the default site
    _shot(page, "steering_selection")


def test_circuits_ablates_the_selection(page) -> None:
    open_tab(page, "Circuits")
    click(page, "Ablate the selected heads")
    line = re.compile(r"heads 9\.4, 12\.1 \(2\): clean metric -?\d+\.\d{3}; with the selection ablated -?\d")
    visible(page.get_by_text(line)).wait_for(timeout=240_000)
    visible(page.get_by_text("every other head mean-ablated (the selection alone)")).wait_for()
    _shot(page, "circuits_ablation")


def test_hover_a_token_shows_its_attention(page) -> None:
    open_tab(page, "Attention & locality")
    set_text(page, "Text (at most 20,000 characters)", _long_text(1100))  # about 250 tokens
    # "Heads to show" left empty: the viewer shows the selected heads
    click(page, "Show pattern")
    canvas = page.locator("#hs-attention canvas").first
    canvas.wait_for(timeout=180_000)
    assert page.locator("#hs-attention canvas").count() == 2  # 9.4 and 12.1
    canvas.scroll_into_view_if_needed()  # the mouse hovers only what the viewport shows
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.8)
    assert "attention weight" in page.locator("#hs-attention .hs-tip").inner_text()
    page.locator('#hs-attention .hs-mode[data-mode="dest"]').click()
    token = page.locator("#hs-attention .hs-strip").first.locator(".hs-tok").nth(40)
    token.hover()
    tip = page.locator("#hs-attention .hs-tip").inner_text()
    assert "position 40" in tip and "L9 H4 attends most to" in tip and "L12 H1 attends most to" in tip
    shaded = page.locator("#hs-attention .hs-strip").first.locator(".hs-tok[style*=background]")
    assert shaded.count() > 0
    _shot(page, "attention_pattern")


def test_cancel_a_long_run_then_run_another_view(page) -> None:
    open_tab(page, "Attention & locality")
    click(page, "Sweep λ from 0 to 1")
    visible(page.get_by_text(re.compile(r"λ sweep on smollm2-135m: λ point \d+/11"))).wait_for()
    page.locator("#hs-cancel-locality_sweep").click()  # each job has its own Cancel (ids: hs-cancel-<slot>)
    visible(
        page.get_by_text(re.compile(r"cancelled 'λ sweep on smollm2-135m' during .*the model is free"))
    ).wait_for()
    set_text(page, "Text (at most 20,000 characters)", SHORT)
    click(page, "Analyse")
    visible(page.get_by_text(f"smollm2-135m, {_n_tokens(SHORT)} tokens: mean attention entropy")).wait_for()
    _shot(page, "locality_after_cancel")


def test_export_reload_import_restores_selection_and_results(page, tmp_path: Path) -> None:
    before = visible(page.get_by_text(f"{_n_tokens(SHORT)} tokens: mean attention entropy")).inner_text()
    click(page, "Export session")
    link = page.locator("#hs-session-file a[download]").first
    link.wait_for()
    with page.expect_download() as dl:
        link.click()
    path = tmp_path / "session.json"
    dl.value.save_as(path)
    bundle = json.loads(path.read_text())
    assert bundle["selection"]["heads"] == "9.4, 12.1" and bundle["model"] == DEFAULT_MODEL
    page.reload()
    page.get_by_text(TITLE).first.wait_for()
    assert _selected_heads(page) == ""
    with page.expect_file_chooser() as chooser:
        click(page, "Import session")
    chooser.value.set_files(str(path))
    _wait_selected(page, "9.4, 12.1")
    open_tab(page, "Attention & locality")
    visible(page.get_by_text(before)).wait_for()
    page.locator('#hs-entropy-grid .hs-selected[data-head="12.1"]').wait_for()
    assert page.locator("#hs-attention canvas").count() == 2  # the pattern view came back too
    _shot(page, "session_restored")


def test_add_buttons_fill_the_selection(page) -> None:
    open_tab(page, "Attention & locality")
    click(page, "Clear")
    _wait_selected(page, "")
    fill_number(page, "k (1 … 64)", "3")
    click(page, "Select the k lowest-entropy heads")
    page.wait_for_function(
        "() => { const e = document.querySelector('#hs-selection textarea, #hs-selection input'); "
        "return e && e.value.split(',').length === 3; }"
    )
    page.locator("#hs-entropy-grid .hs-selected").nth(2).wait_for()  # the grid redraws after the bar
    assert page.locator("#hs-entropy-grid .hs-selected").count() == 3


def test_localist_tab_compares_with_the_distributed_model(page) -> None:
    open_tab(page, "Localist models")
    # the worked example fills the inputs and runs
    visible(page.get_by_text("λ = 1.0, layer 1 head 0")).click()
    page.locator('#hs-localist-grid rect[data-cell="1.0"]').wait_for()
    page.locator("#hs-localist-attention canvas").nth(1).wait_for()
    visible(page.get_by_text(re.compile(r"Mean attention entropy on \d+ tokens"))).wait_for()
    _shot(page, "localist_tab")


def test_features_tab_reads_the_shipped_sae(page) -> None:
    """Top features of the default text (tokens shaded by their top feature), then a feature page from the shipped
    dashboards: top-activating contexts as token text and the activation histogram."""
    open_tab(page, "Features")
    click(page, "Show features")
    page.locator("#hs-features-strip .hs-tok").first.wait_for(timeout=180_000)
    # the page section is an accordion, closed at load
    page.get_by_text("Feature page", exact=True).first.click()
    fill_number(page, "Feature", "1008")
    click(page, "Open feature")
    page.locator("#hs-feature-contexts .hs-tok").first.wait_for(timeout=180_000)
    _wait_plot_in_tab(page, 60_000)  # the activation histogram, drawn after the contexts
    text = page.inner_text("body")
    assert not ID_LIST.search(text) and "token_ids" not in text
    _shot(page, "features_tab")


# ---- the other tabs, once each, on a tiny model ------------------------------------------------------------------
def test_circuits_tab_runs_a_custom_task(page) -> None:
    _pick_model(page, TINY)
    open_tab(page, "Circuits")
    task = visible(page.get_by_label("Task", exact=True))
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
    visible(page.get_by_text("Custom task (used when Task = custom)")).click()  # the accordion
    editor = visible(page.locator(".cm-content"))
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    editor.fill(json.dumps(spec))
    fill_number(page, "Prompt pairs (6 … 32)", "6")
    fill_number(page, "SAE epochs (1 … 500)", "10")
    visible(page.get_by_label("EAP-IG", exact=True)).check()  # edge attribution over the model graph
    click(page, "Find circuit")
    _wait_plot_in_tab(page)
    visible(page.get_by_text("Most faithful (lowest CMD)")).wait_for()
    # the edge graph's title; no empty download box before an export
    visible(page.get_by_text(re.compile(r"EAP-IG circuit at \d+ % of \d+ edges"))).wait_for()
    # a small grid (2 × 4 heads) is as wide as its title and mark legend: no text cut off at the SVG's edge
    texts = page.evaluate(GRID_TEXTS)
    assert any(t.startswith("ground truth: activation patching effect") for t, _, _ in texts), texts
    assert not [(t, round(right), width) for t, right, width in texts if right > width + 0.5]
    assert not page.locator("#hs-circuit-mib-file").filter(visible=True).count()
    click(page, "Export MIB circuit file")
    mib = visible(page.locator("#hs-circuit-mib-file"))
    mib.wait_for()
    # the file's name shows as "<stem>" and ".json" in two elements
    page.wait_for_function("() => document.querySelector('#hs-circuit-mib-file').innerText.includes('-mib')")
    assert re.search(r"headscope-custom-tiny-llama-eap_ig-s0-mib\s*\.json", mib.inner_text())
    _shot(page, "circuits_tab")


def test_steering_tab_shows_unsteered_and_steered(page) -> None:
    open_tab(page, "Steering")
    fill_number(page, "Layer", "1")
    set_text(page, "Prompts (one a line)", "Hello there")
    visible(page.get_by_label("Held-out texts to measure on", exact=True)).click()  # the pasted texts: quick
    page.get_by_role("option", name="none: measure on the texts above (in-sample)", exact=True).click()
    fill_number(page, NEW_TOKENS, "100000")  # typed out of range: refused on the server, never snapped to 48
    click(page, "Steer")
    line = "new tokens must be an integer in [1, 48], got 100000"
    assert line in refused(page, re.escape(line)).splitlines()  # one line, the whole message
    assert visible(page.get_by_label(NEW_TOKENS, exact=True)).input_value() == "100000"
    fill_number(page, NEW_TOKENS, "4")
    click(page, "Steer")
    visible(page.get_by_text("Steered at layer 1")).wait_for(timeout=240_000)
    for side in ("unsteered", "steered"):
        visible(page.locator(f"#hs-contrastive-{side} .hs-tok")).wait_for()
    visible(page.get_by_text("perplexity (× none)")).wait_for()
    _shot(page, "steering_tab")


def test_decoding_tab_compares_two_strategies(page) -> None:
    open_tab(page, "Decoding")
    for name in ("jacobi", "layer_skip"):
        box = visible(page.get_by_label(name, exact=True))
        if box.is_checked():
            box.uncheck()
    fill_number(page, "Max new tokens", "8")  # a gr.Number: a slider snaps typed values in the browser
    click(page, "Compare")
    _wait_plot_in_tab(page)  # a result: the plot is empty until the comparison returns
    _shot(page, "decoding_tab")


@pytest.mark.parametrize(
    "tab",
    ["Model", "Attention & locality", "Localist models", "Circuits", "Steering", "Decoding", "Features"],
)
def test_no_visible_json_list_of_token_ids(page, tab: str) -> None:
    """Tabs owned elsewhere join this list once they show tokens as text (their views, issue 13)."""
    open_tab(page, tab)
    page.wait_for_timeout(300)
    text = page.inner_text("body")
    assert not ID_LIST.search(text), ID_LIST.search(text)
    assert "token_ids" not in text


def test_leaving_the_page_cancels_the_visitors_job(page, app_url: str) -> None:
    import time

    from headscope.app import jobs

    _pick_model(page, DEFAULT_MODEL)
    open_tab(page, "Attention & locality")
    set_text(page, "Text (at most 20,000 characters)", _long_text(4000))
    click(page, "Sweep λ from 0 to 1")
    visible(page.get_by_text(re.compile(r"λ sweep on smollm2-135m: λ point \d+/11"))).wait_for()
    [job] = [j for j in jobs.BOARD.running() if j.title.startswith("λ sweep")]
    page.goto("about:blank")  # the visitor leaves
    deadline = time.monotonic() + 120
    while not job.wait(0.5) and time.monotonic() < deadline:
        pass
    assert job.status().state == "cancelled"
    page.goto(app_url)
    page.get_by_text(TITLE).first.wait_for()
