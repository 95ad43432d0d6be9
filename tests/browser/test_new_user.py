"""What a new user hit (issue 21 item 7), in Debian Chromium driven by playwright: typed values outside a field's
range are refused with the one-line range message (never snapped: in Chromium a gr.Slider snaps a typed 5 to its
maximum without a word, so typed fields are `inputs.ranged_number`); a job reports progress in ONE status line (no
overlay on every output panel); Cancel shows only while its job runs and reads "Cancelled", never a red "Error";
no table with placeholder headers "1 2 3" and no empty download box on any tab at load; the circuits tab has its
Neuronpedia and MIB export buttons. Screenshots of the tabs this touches go to test-output/screenshots/.
Playwright never downloads a browser here: it drives /usr/bin/chromium. Tests share one page, in file order
(the `page` fixture is in tests/conftest.py, the helpers that drive it in tests/browser/ui.py)."""

from __future__ import annotations

import re

import pytest

from tests.browser.ui import SHOTS, click, close_toasts, open_tab, refused, toasts, visible

pytestmark = [pytest.mark.browser, pytest.mark.default_model]
TABS = ("Model", "Attention & locality", "Localist models", "Decoding", "Steering", "Circuits", "Features")
LAMBDA = "λ (locality) (0 … 1)"
TEXT_BOX = "Text (at most 20,000 characters)"


def test_no_placeholder_headers_or_empty_download_boxes_at_load(page) -> None:
    for title in TABS:
        open_tab(page, title)
        headers = page.evaluate(
            "() => [...document.querySelectorAll('table thead')].filter(e => e.offsetParent !== null)"
            ".map(e => [...e.querySelectorAll('th')].map(th => th.innerText.trim()).filter(Boolean))"
        )
        placeholder = [h for h in headers if h and all(x.isdigit() for x in h)]
        assert not placeholder, f"{title}: a table with placeholder headers {placeholder}"
        empty = page.evaluate(
            "() => [...document.querySelectorAll('.block')].filter(b => b.offsetParent !== null"
            " && /^Download /.test((b.querySelector('[data-testid=\"block-info\"], label')||{}).innerText||'')"
            " && !b.querySelector('a')).map(b => b.innerText.slice(0, 60))"
        )
        assert not empty, f"{title}: empty download boxes {empty}"


def test_lambda_typed_out_of_range_is_refused_not_snapped(page) -> None:
    open_tab(page, "Attention & locality")
    box = visible(page.get_by_label(LAMBDA, exact=True))
    box.fill("5")
    click(page, "Analyse")
    toast = refused(page, r"lambda must be in \[0, 1\], got 5")
    assert "lambda must be in [0, 1], got 5" in toast.splitlines()  # one line, the whole message
    assert box.input_value() == "5"  # the field was not changed behind the user's back
    box.fill("0.6")


def test_decoding_refuses_100000_new_tokens(page) -> None:
    """'Max new tokens' is a server-checked number field (a gr.Slider would snap 100000 to its maximum)."""
    open_tab(page, "Decoding")
    field = page.get_by_label(re.compile(r"^(number input for )?max(imum)? new tokens", re.I))
    box = visible(field)
    box.fill("100000")
    box.press("Tab")
    click(page, "Compare")
    refused(
        page,
        r"(new tokens|max_new_tokens).*(\[\d+, ?[\d,]+\]|\d+ … [\d,]+).*100,?000|100,?000.*(limit|at most)",
    )


def test_a_job_reports_in_one_status_line_and_cancel_reads_cancelled(page) -> None:
    from headscope.data import excerpt_text

    open_tab(page, "Attention & locality")
    cancel = page.locator("#hs-cancel-locality_sweep")
    assert not cancel.is_visible()  # no Cancel before its job runs
    visible(page.get_by_label(TEXT_BOX, exact=True)).fill(excerpt_text()[:4000])
    click(page, "Sweep λ from 0 to 1")
    status = page.locator("#hs-status-locality_sweep")
    visible(status.get_by_text(re.compile(r"λ sweep on smollm2-135m: λ point \d+/11"))).wait_for(
        timeout=240_000
    )
    trackers = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=\"status-tracker\"], .progress-text')]"
        ".filter(e => e.offsetParent !== null && !e.className.includes('hide') && /\\d\\.\\ds/.test(e.innerText))"
        ".map(e => (e.closest('[id]') || {}).id || '(no id)')"
    )  # every place that shows a running timer
    assert trackers and set(trackers) == {"hs-status-locality_sweep"}, trackers  # one line, no overlays
    assert cancel.is_visible()
    page.screenshot(path=str(SHOTS / "new_user_sweep_progress.png"))
    cancel.click()
    visible(
        status.get_by_text(re.compile(r"cancelled 'λ sweep on smollm2-135m' during .*the model is free"))
    ).wait_for()
    toast = visible(
        page.locator('[data-testid="toast-body"]').filter(has_text=re.compile(r"Cancelled during 'λ point"))
    )
    toast.wait_for()
    texts = toasts(page)
    assert not [t for t in texts if "Error" in t], texts  # a Cancel is not an error
    assert "Error" not in status.inner_text()  # nor does its status line say so
    page.wait_for_function(
        "() => !document.querySelector('#hs-cancel-locality_sweep')"
        " || document.querySelector('#hs-cancel-locality_sweep').offsetParent === null"
    )
    page.screenshot(path=str(SHOTS / "new_user_cancelled.png"))
    close_toasts(page)


def test_locality_and_localist_tabs_after_a_run(page) -> None:
    open_tab(page, "Attention & locality")
    visible(page.get_by_label(TEXT_BOX, exact=True)).fill(
        "The cat sat on the mat. It was warm, and the sun shone."
    )
    visible(page.get_by_label(LAMBDA, exact=True)).fill("0.6")
    click(page, "Analyse")
    page.locator('#hs-entropy-delta rect[data-cell="9.4"]').wait_for(timeout=240_000)
    assert visible(
        page.get_by_text("Δ vs λ = 0 (bits)")
    ).is_visible()  # the head table, with its real headers
    page.screenshot(path=str(SHOTS / "new_user_locality.png"), full_page=True)
    open_tab(page, "Localist models")
    visible(page.get_by_text("λ = 1.0, layer 1 head 0")).click()
    page.locator("#hs-localist-attention canvas").nth(1).wait_for()
    page.screenshot(path=str(SHOTS / "new_user_localist.png"), full_page=True)


def test_the_circuits_tab_has_neuronpedia_and_mib_export_buttons(page) -> None:
    """Both export buttons, with their labels, sit in the same results column as the report download. That column
    is shown once a report is drawn (no empty boxes before a run) and Gradio renders nothing of a hidden column,
    so this reads the page's own component tree (`gradio_config`); tests/app/test_browser.py clicks one after a
    run."""
    open_tab(page, "Circuits")
    found = page.evaluate(
        COMPONENT_TREE, ["hs-circuit-report", "hs-circuit-export-np", "hs-circuit-export-mib"]
    )
    report, np_button, mib_button = found
    assert report is not None, "no report download (#hs-circuit-report)"
    column = report["up"][0]  # the column the download sits in
    labels = ("Export for circuit-tracer / Neuronpedia", "Export MIB circuit file")
    for button, label in zip((np_button, mib_button), labels, strict=True):
        assert button is not None, f"no {label!r} button"
        assert button["type"] == "button" and button["value"] == label
        assert column in button["up"][:2], f"{label!r} is not beside the report download"


# elem_id → {type, value, up: the ids of its layout ancestors, nearest first} (null when absent)
COMPONENT_TREE = """(elems) => {
    const cfg = window.gradio_config, byElem = {}, parent = {};
    for (const c of cfg.components) if (c.props && c.props.elem_id) byElem[c.props.elem_id] = c;
    const walk = (node, up) => { parent[node.id] = up; for (const k of node.children || []) walk(k, node.id); };
    walk(cfg.layout, null);
    const chain = (id) => { const out = []; for (let p = parent[id]; p != null; p = parent[p]) out.push(p); return out; };
    return elems.map((e) => byElem[e] ? {type: byElem[e].type, value: byElem[e].props.value, up: chain(byElem[e].id)} : null);
}"""
