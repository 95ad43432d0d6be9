"""App views on the default model, against baselines measured in the same run. Prints one JSON object and writes
bench/results/app_views_cpu_2core.json.

1. The 256-token pattern view (the whole handler: tokenise, one forward caching the pattern, encode the view
   value) against a plain 256-token forward. Goal: ≤ 4×.
2. Client B's entropy view of a 7-token text (gradio_client, against the app launched here) while another
   visitor's circuit run is in progress as a job on the app's runner, against the same view alone. Goal: ≤ 10×.
3. In Debian chromium (when installed): how long the page takes to draw the 256-token view of six heads, in each
   mode, and to re-shade all six strips when the pointer moves to another token (the page must not stall).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from gradio_client import Client

RESULT = Path(__file__).resolve().parent / "results" / "app_views_cpu_2core.json"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SIX = "3.1, 9.4, 12.1, 15.0, 20.5, 27.8"
MODEL = "smollm2-135m"
SHORT = "The cat sat on the mat."
VIEW_ARGS = (0.0, "distance", "uniform", 3.0, "all heads")


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _text_of(handle: Any, n_tokens: int) -> str:
    from headscope.data import excerpt_text

    ids = handle.tokenizer(excerpt_text(), add_special_tokens=True).input_ids[:n_tokens]
    text = handle.tokenizer.decode(ids)
    while handle.tokenize(text).shape[1] > n_tokens:  # decode → encode may merge a token or two differently
        text = text[:-5]
    return text


def pattern_view(repeats: int) -> dict[str, Any]:
    from headscope.app import locality_tab as tab
    from headscope.app import selection as sel
    from headscope.app.state import STORE

    handle = STORE.get(MODEL)
    text = _text_of(handle, 256)
    tokens = handle.tokenize(text)
    handle.forward(tokens)  # warm-up
    forward = _median_time(lambda: handle.forward(tokens), repeats)
    one = {}

    def view(source: str, selection: Any) -> None:
        one["v"] = tab.pattern(MODEL, text, *VIEW_ARGS, selection, 9, 4, source)

    view(tab.PATTERN_SOURCES[0], None)
    single = _median_time(lambda: view(tab.PATTERN_SOURCES[0], None), repeats)
    size_one = len(json.dumps(one["v"]))
    six = sel.from_text(sel.empty(), SIX, handle)
    multi = _median_time(lambda: view(tab.PATTERN_SOURCES[1], six), repeats)
    return {
        "n_tokens": int(tokens.shape[1]),
        "forward_s": round(forward, 4),
        "view_1_head_s": round(single, 4),
        "ratio_1_head": round(single / forward, 2),
        "view_6_heads_s": round(multi, 4),
        "ratio_6_heads": round(multi / forward, 2),
        "value_bytes_1_head": size_one,
        "value_bytes_6_heads": len(json.dumps(one["v"])),
        "goal": "view ≤ 4 × forward",
    }


def view_during_job(url: str, samples: int, examples: int, epochs: int) -> dict[str, Any]:
    """Client B's entropy view alone, then while client A's circuit run is in progress. The run is started the way
    the circuits tab starts it — a job on the app's runner, owned by another visitor — so this measures the design
    (views in their own queue group, jobs holding the model one forward at a time) whatever that tab's signature."""
    from headscope.app import jobs
    from headscope.app.state import STORE
    from headscope.circuits import CircuitConfig, SAEConfig, find_circuit

    b = Client(url, verbose=False)

    def view() -> float:
        t0 = time.perf_counter()
        b.predict(MODEL, SHORT, *VIEW_ARGS, api_name="/locality_analyse")
        return time.perf_counter() - t0

    view()  # warm-up (the model is already loaded)
    solo = [view() for _ in range(samples)]
    handle = STORE.get(MODEL)
    cfg = CircuitConfig(task="ioi", n_examples=examples, seed=0, sae=SAEConfig(epochs=epochs))

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return find_circuit(handle, cfg, progress=report.stages()).to_json()

    t_job = time.perf_counter()
    job = jobs.BOARD.start(
        jobs.JobSpec("circuit run (ioi)", work, model=MODEL), owner="client-a", slot="bench"
    )
    while job.status().stage in ("queued", "starting", "building task"):  # into model work first
        job.wait(0.2)
    during: list[float] = []
    while not job.wait(0) and len(during) < samples:
        during.append(view())
        job.wait(0.5)
    finished_first = not job.wait(0)
    job.result()
    job_s = time.perf_counter() - t_job
    med_solo = statistics.median(solo)
    return {
        "job": f"circuit run: ioi, {examples} prompt pairs, {epochs} SAE epochs (a job on the app's runner)",
        "job_s": round(job_s, 1),
        "view": f"client B's /locality_analyse of a {handle.tokenize(SHORT).shape[1]}-token text",
        "solo_s_median": round(med_solo, 3),
        "during_s_median": round(statistics.median(during), 3) if during else None,
        "during_s_max": round(max(during), 3) if during else None,
        "samples_during": len(during),
        "all_answered_before_the_job_ended": finished_first,
        "ratio_median": round(statistics.median(during) / med_solo, 2) if during else None,
        "ratio_max": round(max(during) / med_solo, 2) if during else None,
        "goal": "during ≤ 10 × solo",
    }


def browser_render(url: str) -> dict[str, Any] | None:
    """Milliseconds the page spends drawing the six-head 256-token view (as the view's JavaScript records it)."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    from headscope.app.state import STORE

    text = _text_of(STORE.get(MODEL), 256)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(600_000)
            pg.goto(url)
            pg.get_by_role("tab", name="Attention & locality", exact=True).click()
            bar = pg.locator("#hs-selection textarea, #hs-selection input").first
            bar.fill(SIX)
            bar.press("Enter")
            pg.get_by_label("Text (at most 20,000 characters)", exact=True).fill(text)
            pg.get_by_label("the selected heads (up to 6)").check()
            pg.get_by_role("button", name="Show pattern", exact=True).click()
            pg.locator("#hs-attention canvas").nth(5).wait_for()
            root = pg.locator("#hs-attention .hs-root")
            out = {"matrix_render_ms": float(root.get_attribute("data-render-ms") or "nan")}
            pg.locator('#hs-attention .hs-mode[data-mode="dest"]').click()
            out["tokens_render_ms"] = float(root.get_attribute("data-render-ms") or "nan")
            strip = pg.locator("#hs-attention .hs-strip").first.locator(".hs-tok")
            focus = []
            for i in (40, 120, 250):
                strip.nth(i).hover()
                pg.wait_for_timeout(100)
                focus.append(float(root.get_attribute("data-focus-ms") or "nan"))
            out["hover_reshade_ms_max"] = max(focus)
            out["heads"], out["n_tokens"] = 6, strip.count()
            return out
        finally:
            browser.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--examples", type=int, default=8, help="circuit run: prompt pairs")
    ap.add_argument("--epochs", type=int, default=100, help="circuit run: SAE epochs")
    ap.add_argument("--only-browser", action="store_true", help="only part 3 (no result file written)")
    args = ap.parse_args()
    from headscope.app.main import demo, launch
    from headscope.app.state import STORE

    STORE.get(MODEL)
    port = 7800 + os.getpid() % 150
    if args.only_browser:
        launch(port=port)
        try:
            print(json.dumps(browser_render(f"http://127.0.0.1:{port}/")))
        finally:
            demo.close()
        return
    out: dict[str, Any] = {"pattern_view": pattern_view(args.repeats)}
    launch(port=port)
    try:
        out["view_during_circuit_run"] = view_during_job(
            f"http://127.0.0.1:{port}/", args.samples, args.examples, args.epochs
        )
        out["browser_render"] = browser_render(f"http://127.0.0.1:{port}/")
    finally:
        demo.close()
    out["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
