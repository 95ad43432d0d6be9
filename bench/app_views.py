"""App views on the default model, against baselines measured in the same run. Prints one JSON object and writes it,
with the run's conditions (bench/conditions.py: commit, threads, load average before and after, the exact command,
`quiet`), to bench/results/app_views_cpu_2core.json (or --out).

1. Pattern view: the Attention tab's whole pattern handler (tokenise, one forward caching the pattern, encode the
   view value) for one head and for six selected heads, and a plain forward of the same N tokens (default 256),
   timed interleaved (`conditions.interleaved`: rotating order, --rounds rounds after one warm-up each). Reported:
   each one's median and minimum, and view / forward as the ratio of medians and of minima. Goal: the median
   ratio ≤ 4.
2. Client B's entropy view of a 7-token text (gradio_client, against the app launched here) while another visitor's
   circuit run is in progress as a job on the app's runner, against the same view alone. The solo view is timed
   --samples times before the job starts and --samples times after it ends, so the baseline brackets the job
   rather than always coming first. Reported: the median of all solo views, the median and maximum of the views
   answered during the job, and both over the solo median. Goal: the median ratio ≤ 10.
3. In Debian chromium (when installed): how long the page takes to draw the N-token view of six heads, in each
   mode, and to re-shade all six strips when the pointer moves to another token (the page must not stall).

A part that fails records its error in the JSON and the other parts still run. --quick is a smoke run (64 tokens,
3 rounds, 2 solo samples on each side, a 2-pair circuit run with 5 SAE epochs), written to a temporary file unless
--out is given. --wait-quiet S waits up to S seconds for the 1-minute load average to fall below 1.5 first.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from bench import conditions

RESULT = Path(__file__).resolve().parent / "results" / "app_views_cpu_2core.json"
QUICK_RESULT = Path(tempfile.gettempdir()) / "headscope-bench" / "app_views_quick.json"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SIX = "3.1, 9.4, 12.1, 15.0, 20.5, 27.8"
MODEL = "smollm2-135m"
SHORT = "The cat sat on the mat."
VIEW_ARGS = (0.0, "distance", "uniform", 3.0, "all heads")


def _text_of(handle: Any, n_tokens: int) -> str:
    from headscope.data import excerpt_text

    ids = handle.tokenizer(excerpt_text(), add_special_tokens=True).input_ids[:n_tokens]
    text = handle.tokenizer.decode(ids)
    while handle.tokenize(text).shape[1] > n_tokens:  # decode → encode may merge a token or two differently
        text = text[:-5]
    return text


def pattern_view(n_tokens: int, rounds: int) -> dict[str, Any]:
    from headscope.app import locality_tab as tab
    from headscope.app import selection_bar as sel
    from headscope.app.state import STORE
    from headscope.app.wiring import Ctx

    handle = STORE.get(MODEL)
    text = _text_of(handle, n_tokens)
    tokens = handle.tokenize(text)
    six = sel.from_text(sel.empty(), SIX, handle)
    values: dict[str, Any] = {}
    dial = dict(zip(("lam", "mode", "schedule", "beta", "scope"), VIEW_ARGS, strict=True))

    def view(name: str, heads: str, selection: Any) -> Callable[[], None]:
        inputs = {"model": MODEL, "text": text, **dial, "selection": selection, "heads": heads}

        def run() -> None:
            values[name] = tab.pattern(inputs, Ctx())

        return run

    timing = conditions.interleaved(
        {
            "forward": lambda: handle.forward(tokens),
            "view_1_head": view("view_1_head", "9.4", sel.empty()),
            "view_6_heads": view("view_6_heads", "", six),  # empty field: the selected heads
        },
        rounds=rounds,
    )
    r1, r6 = (conditions.ratio(timing, name, "forward") for name in ("view_1_head", "view_6_heads"))
    return {
        "n_tokens": int(tokens.shape[1]),
        "timing": timing,
        "ratio_1_head": r1,
        "ratio_6_heads": r6,
        "value_bytes_1_head": len(json.dumps(values["view_1_head"])),
        "value_bytes_6_heads": len(json.dumps(values["view_6_heads"])),
        "goal": "view ≤ 4 × forward (ratio of medians)",
        "goal_met": max(r1["median_ratio"], r6["median_ratio"]) <= 4.0,
    }


def _during(job: Any, view: Callable[[], float], samples: int) -> list[float]:
    """Views answered while the job runs (after it has entered model work), at most `samples` of them."""
    while job.status().stage in ("queued", "starting", "building task") and not job.wait(0.2):
        pass  # not in model work yet (a job that fails there ends the wait)
    during: list[float] = []
    while not job.wait(0) and len(during) < samples:
        during.append(view())
        job.wait(0.5)
    return during


def view_during_job(url: str, samples: int, examples: int, epochs: int) -> dict[str, Any]:
    """Client B's entropy view alone (before and after), and while client A's circuit run is in progress. The run
    is started the way the circuits tab starts it — a job on the app's runner, owned by another visitor — so this
    measures the design (views in their own queue group, jobs holding the model one forward at a time)."""
    from gradio_client import Client

    from headscope.app import jobs
    from headscope.app.state import STORE
    from headscope.circuits import CircuitConfig, SAEConfig, find_circuit

    b = Client(url, verbose=False)

    def view() -> float:
        t0 = time.perf_counter()
        b.predict(MODEL, SHORT, *VIEW_ARGS, api_name="/locality_analyse")
        return time.perf_counter() - t0

    view()  # warm-up (the model is already loaded)
    before = [view() for _ in range(samples)]
    handle = STORE.get(MODEL)
    cfg = CircuitConfig(task="ioi", n_examples=examples, seed=0, sae=SAEConfig(epochs=epochs))

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return find_circuit(handle, cfg, progress=report.stages()).to_json()

    t_job = time.perf_counter()
    spec = jobs.JobSpec("circuit run (ioi)", work, model=MODEL)
    job = jobs.BOARD.start(spec, owner="client-a", slot="bench")
    during = _during(job, view, samples)
    answered_first = not job.wait(0)
    job.result()
    job_s = time.perf_counter() - t_job
    after = [view() for _ in range(samples)]
    solo = statistics.median(before + after)
    return {
        "job": f"circuit run: ioi, {examples} prompt pairs, {epochs} SAE epochs (a job on the app's runner)",
        "job_s": round(job_s, 1),
        "view": f"client B's /locality_analyse of a {handle.tokenize(SHORT).shape[1]}-token text",
        "solo_before_s": [round(t, 4) for t in before],
        "solo_after_s": [round(t, 4) for t in after],
        "during_s": [round(t, 4) for t in during],
        "solo_s_median": round(solo, 4),
        "during_s_median": round(statistics.median(during), 4) if during else None,
        "during_s_max": round(max(during), 4) if during else None,
        "all_answered_before_the_job_ended": answered_first,
        "ratio_median": round(statistics.median(during) / solo, 2) if during else None,
        "ratio_max": round(max(during) / solo, 2) if during else None,
        "goal": "during ≤ 10 × solo (ratio of medians)",
        "goal_met": bool(during) and statistics.median(during) / solo <= 10.0,
    }


def browser_render(url: str, n_tokens: int) -> dict[str, Any]:
    """Milliseconds the page spends drawing the six-head view (as the view's JavaScript records it)."""
    if not CHROMIUM.exists():
        return {"skipped": f"{CHROMIUM} not installed"}
    from playwright.sync_api import sync_playwright

    from headscope.app.state import STORE

    text = _text_of(STORE.get(MODEL), n_tokens)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            return _draw(browser.new_page(viewport={"width": 1400, "height": 1000}), url, text)
        finally:
            browser.close()


def _draw(pg: Any, url: str, text: str) -> dict[str, Any]:
    pg.set_default_timeout(600_000)
    pg.goto(url)
    pg.get_by_role("tab", name="Attention & locality", exact=True).click()
    bar = pg.locator("#hs-selection textarea, #hs-selection input").first
    bar.fill(SIX)
    bar.press("Enter")
    pg.get_by_label("Text (at most 20,000 characters)", exact=True).fill(text)
    pg.get_by_role("button", name="Show pattern", exact=True).click()
    pg.locator("#hs-attention canvas").nth(5).wait_for()
    root = pg.locator("#hs-attention .hs-root")
    out = {"matrix_render_ms": float(root.get_attribute("data-render-ms") or "nan")}
    pg.locator('#hs-attention .hs-mode[data-mode="dest"]').click()
    out["tokens_render_ms"] = float(root.get_attribute("data-render-ms") or "nan")
    strip = pg.locator("#hs-attention .hs-strip").first.locator(".hs-tok")
    n = strip.count()
    focus = []
    for i in sorted({n // 6, n // 2, n - 2}):
        strip.nth(i).hover()
        pg.wait_for_timeout(100)
        focus.append(float(root.get_attribute("data-focus-ms") or "nan"))
    out["hover_reshade_ms_max"] = max(focus)
    out["heads"], out["n_tokens"] = 6, n
    return out


def _part(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One part's result, or its error (the other parts still run, and the JSON says what failed)."""
    try:
        return fn()
    except Exception as exc:  # a benchmark reports what broke rather than losing every figure
        print(traceback.format_exc(), file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_quiet(limit_s: float) -> float:
    """Wait until the 1-minute load average is below the quiet bar, at most `limit_s`; returns seconds waited."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= conditions.QUIET_LOAD and time.monotonic() - t0 < limit_s:
        time.sleep(10)
    return round(time.monotonic() - t0, 1)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256, help="pattern view length")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (≥ 3)")
    ap.add_argument(
        "--samples", type=int, default=6, help="solo views before and after the job; views during"
    )
    ap.add_argument("--examples", type=int, default=8, help="circuit run: prompt pairs")
    ap.add_argument("--epochs", type=int, default=100, help="circuit run: SAE epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parts", default="pattern,during,browser", help="which parts to run (comma-separated)")
    ap.add_argument("--quick", action="store_true", help="smoke run at small sizes (see the docstring)")
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S", help="wait up to S s for load < 1.5"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.tokens, args.rounds, args.samples, args.examples, args.epochs = 64, 3, 2, 2, 5
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")
    if not set(args.parts.split(",")) <= {"pattern", "during", "browser"}:
        ap.error("--parts takes pattern, during and browser")
    args.out = args.out or (QUICK_RESULT if args.quick else RESULT)
    return args


def _launch(port: int, tries: int = 3) -> None:
    """gradio refuses to start when its own HEAD request to the page times out (3 s), as it can on a loaded
    machine: try again rather than lose the run."""
    from headscope.app.main import close, launch

    for attempt in range(tries):
        try:
            return launch(port=port)
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == tries - 1:
                raise
            close()
            time.sleep(10)


def app_parts(parts: set[str], args: argparse.Namespace) -> dict[str, Any]:
    """Parts 2 and 3, against the app launched here (one error for both when it does not start)."""
    from headscope.app.main import close

    names = {"during": "view_during_circuit_run", "browser": "browser_render"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    launched = _part(lambda: _launch(port) or {})
    if "error" in launched:
        return {names[p]: launched for p in names if p in parts}
    out: dict[str, Any] = {}
    try:
        if "during" in parts:
            out[names["during"]] = _part(
                lambda: view_during_job(url, args.samples, args.examples, args.epochs)
            )
        if "browser" in parts:
            out[names["browser"]] = _part(lambda: browser_render(url, args.tokens))
    finally:
        close()
    return out


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    waited = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else 0.0
    cond = conditions.start(args.threads)
    from headscope.app.state import STORE

    STORE.get(MODEL)
    parts = set(args.parts.split(","))
    out: dict[str, Any] = {"bench": "app_views", "quick": args.quick, "waited_for_quiet_s": waited}
    if "pattern" in parts:
        out["pattern_view"] = _part(lambda: pattern_view(args.tokens, args.rounds))
    out.update(app_parts(parts, args))
    conditions.write(out, args.out, cond)


if __name__ == "__main__":
    main()
