"""The Decoding tab: its endpoint through gradio_client like any API user, its handlers called with a dict, and its
views (decoding_views) checked against independent computations on a real comparison of the tiny models."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client

from headscope.app import decoding_tab as tab
from headscope.app import decoding_views as dv
from headscope.app.wiring import Ctx, handler
from headscope.cli.decoding import config_from_argv, to_argv
from headscope.decoding import Comparison
from headscope.decoding import summary as ds
from headscope.decoding.trace import Step, Trace
from headscope.errors import HeadscopeError

BASE: dict[str, Any] = dict(
    model="tiny-llama", prompt="abc abc ab", chat=False, strategies=["greedy"], max_new_tokens=8, temperature=0.0,
    seed=0, entropy=True, action="none", lam=1.0, max_draft=4, window=4, tree_size=24, draft_model="(none)", regex="",
    grammar="(none)", method="awrs", particles=1, selection=None,
)  # fmt: skip
ID_LIST = re.compile(r"\[\s*\d+\s*(,\s*\d+\s*){2,}\]")
LOSSLESS = ["greedy", "token_recycling", "ngram", "lookahead", "jacobi"]


def api(client: Client, **over: Any) -> dict[str, Any]:
    """/decode_compare with named parameters (the shared selection is session state, not a parameter)."""
    args = {k: v for k, v in {**BASE, **over}.items() if k != "selection"}
    return client.predict(**args, api_name="/decode_compare")


@pytest.fixture(scope="module")
def lossless() -> Comparison:
    raw = tab.decode_compare({**BASE, "strategies": LOSSLESS, "max_new_tokens": 16}, Ctx())["raw"]
    return Comparison.from_json(raw)


# -- the endpoint ------------------------------------------------------------------------------------------------
def test_the_endpoint_returns_the_clis_json_and_the_views_draw_from_it(client: Client) -> None:
    raw = api(client, strategies=["greedy", "ngram", "jacobi", "speculative", "constrained"], regex="[0-9]{3}",
              draft_model="tiny-gpt2", model="tiny-gpt2")  # fmt: skip
    rows = {r["name"]: r for r in raw["strategies"]}
    assert all(rows[n]["identical_to_greedy"] for n in ("greedy", "ngram", "jacobi", "speculative"))
    assert rows["constrained"]["constraint_evals_per_token"] > 0
    assert raw["token_texts"] and set(map(int, raw["token_texts"])) >= set(raw["greedy_token_ids"])
    views = tab.draw({"raw": raw, "selection": None}, Ctx())
    assert views["status"].startswith("done: 5 run(s)")
    strip = views["strip"]["value"]
    labels = [r["label"] for r in strip["rows"]]
    assert labels[0] == "greedy (reference)" and len(labels) == 5  # greedy's own row once, as the reference
    assert all(not ID_LIST.search(" ".join(r["tokens"])) for r in strip["rows"])
    spec = next(r for r in strip["rows"] if r["label"].startswith("speculative"))
    assert spec["ids"] == rows["speculative"]["token_ids"]  # ids ride along for the hover only
    assert json.loads(Path(views["file"]["value"]).read_text()) == raw
    assert (
        views["speed"]["visible"] and views["grid"]["visible"] is False
    )  # no departure: a sentence, no grid


def test_ablating_the_selected_heads_names_the_rows_for_it(app_url: str) -> None:
    client = Client(app_url, verbose=False)  # a session of its own: the selection is per session
    with pytest.raises(Exception, match="select heads first"):
        api(client, action="dial")
    client.predict("*.*", "tiny-gpt2", api_name="/selection_set")
    raw = api(client, model="tiny-gpt2", prompt="hello world", action="ablate", max_new_tokens=16)
    c = Comparison.from_json(raw)
    assert raw["intervention"] == "ablate heads 0.*, 1.* (mean over the prompt)"
    speed = dv.speed_table(c)
    assert [row[0] for row in speed["data"]] == ["greedy", "greedy + ablation of 0.*, 1.*"]
    assert not c.results[0].identical_to_greedy
    views = tab.draw({"raw": raw, "selection": None}, Ctx())
    assert views["strip"]["value"]["title"].startswith("intervention: ablation of 0.*, 1.*")
    assert f"departs from greedy at token {c.results[0].diverges_at}" in views["note"]
    grid = views["grid"]["value"]
    assert views["grid"]["visible"] and grid["kind"] == "head_grid" and grid["scale"] == "diverging"
    assert np.array(grid["z"]).shape == (2, 4)


def test_a_dial_from_the_selection_is_a_locality_dial_in_the_command() -> None:
    """The job's command is `decode compare` written by the CLI's own to_argv: parsed back, the same command."""
    from headscope.app import selection_bar as sel
    from headscope.app.state import STORE

    selection = sel.from_text(sel.empty(), "0.1, 1.*", STORE.get("tiny-llama"))
    cmd = tab.compare_command({**BASE, "action": "dial", "lam": 0.5, "selection": selection, "chat": True,
                               "strategies": ["greedy", "constrained"], "grammar": "json_object"})  # fmt: skip
    assert (
        cmd.config.dial is not None
        and cmd.config.dial.lam == 0.5
        and cmd.config.dial.heads_text == "0.1, 1.*"
    )
    assert (
        cmd.config.ablate_heads is None and cmd.config.grammar == "json_object" and cmd.config.regex is None
    )
    assert config_from_argv(to_argv(cmd)) == cmd
    assert (
        ds.run_name(Trace(strategy="ngram", intervention="x"), cmd.config)
        == "ngram + dial λ=0.50 of 0.1, 1.*"
    )


# -- typed values: refused with the range, never snapped ---------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "bad", "message"),
    [
        ("prompt", "x" * 5000, "the limit is 4,000"),
        ("max_new_tokens", 100_000, r"max new tokens must be an integer in \[1, 128\], got 100000"),
        ("max_new_tokens", "abc", "max new tokens must be a number"),
        ("max_new_tokens", float("nan"), "max new tokens"),
        ("max_new_tokens", 1.7, "max new tokens must be an integer"),
        ("temperature", 2.5, r"temperature must be in \[0, 2\]"),
        ("temperature", float("inf"), "temperature"),
        ("seed", 2.5, "seed must be an integer"),
        ("max_draft", "3.5", "max draft length must be an integer"),
        ("window", 17, r"Jacobi / lookahead window must be an integer in \[1, 16\]"),
        ("particles", 0, "SMC particles"),
        ("tree_size", 129, r"tree size must be an integer in \[1, 128\]"),
        ("lam", 5, r"λ must be in \[0, 1\], got 5"),
        ("action", "erase", "heads action must be one of"),
        ("strategies", ["greedy", "rm -rf"], "unknown strategy"),
        ("draft_model", "../etc/passwd", "unknown draft model"),
        ("model", "org/model", "unknown model"),
        ("strategies", ["speculative"], "speculative needs a draft model"),
    ],
)
def test_bad_values_are_refused_with_one_line_before_any_job(key: str, bad: object, message: str) -> None:
    """What an API caller (or a typed value) sends reaches the same checks: one readable line each, no job."""
    inputs = {**BASE, key: bad}
    with pytest.raises(HeadscopeError, match=message):
        tab.compare_command(inputs)
    call = handler(tab.decode_compare, inputs, {"raw": None})
    with pytest.raises(gr.Error, match=message) as err:
        call(*inputs.values())
    assert "internal error" not in str(err.value) and "\n" not in str(err.value)


def test_typed_numbers_are_number_fields_not_sliders() -> None:
    """A gr.Slider snaps a typed 100000 to its maximum in the browser (checked with chromium: the server got 128),
    so the range message could never be shown: every typed number is a gr.Number with no client-side bounds."""
    with gr.Blocks():
        fields = tab._settings()
    for key, (label, *_rest) in tab.NUMBERS.items():
        assert isinstance(fields[key], gr.Number) and fields[key].label == label
        assert fields[key].minimum is None and fields[key].maximum is None  # gradio's own message would win


# -- the views, against independent computations ---------------------------------------------------------------
def test_speed_columns_are_ratios_to_greedy_flagged_below_1x(lossless: Comparison) -> None:
    g = lossless.greedy
    for row, r in zip(dv.speed_rows(lossless), lossless.results, strict=True):
        mat = len(r.token_ids) / r.target_forwards
        want = mat / (len(g.token_ids) / g.target_forwards)
        assert row["mat"] == pytest.approx(mat, abs=1e-4) and _times(row["x_forward"]) == pytest.approx(
            want, abs=6e-3
        )
        # wall times are written to 0.1 ms: recomputed from the JSON, the ratio agrees to a few percent
        wall = (len(r.token_ids) / r.wall_s) / (len(g.token_ids) / g.wall_s)
        assert _times(row["x_wall"]) == pytest.approx(wall, rel=0.05, abs=6e-3)
        assert row["x_wall"].endswith("× — below 1×") == r.below_1x_wall == (r.speedup_wall < 1)
        assert r.below_1x_wall == (wall < 1) or abs(wall - 1) < 0.05
        assert row["x_forward"].endswith("× — below 1×") == (want < 1) and row["same"] == "yes"


def _times(cell: str) -> float:
    return float(cell.split("×")[0])


def test_a_step_tree_lists_the_accepted_path_first_with_its_tokens_as_text(lossless: Comparison) -> None:
    run = next(r for r in lossless.results if r.strategy == "token_recycling")
    step = next(s for s in run.steps if s.draft_parents is not None and s.n_draft_accepted)
    paths = ds.tree_paths(step)
    # independent: a path is root-to-leaf when each node's parent is the node before it
    parents = step.draft_parents
    assert parents is not None
    for p in paths:
        assert parents[p[0]] == -1 and all(parents[b] == a for a, b in itertools.pairwise(p))
    assert sorted(p[-1] for p in paths) == sorted(set(range(len(parents))) - set(parents))
    assert paths[0][: len(step.accepted_path)] == tuple(step.accepted_path)
    hover = dv.step_hover(lossless, step)
    words = [lossless.token_texts[t] for t in step.accepted[: step.n_draft_accepted]]
    assert f"{len(step.draft_tokens)} drafted node(s)" in hover and "✓" in hover
    assert all(dv.visible_token(w) in hover for w in words) and not ID_LIST.search(hover)
    chain = Step(0, (5, 6, 7), "lookup", (5, 9), 1, (0.5, 0.5), (1.0, 1.0), accepted_path=(0,))
    assert ds.tree_paths(chain) == [(0, 1, 2)]  # a chain: one path


def test_the_trees_figure_has_a_row_per_drafting_run(lossless: Comparison) -> None:
    fig = dv.step_trees(lossless)
    assert fig is not None
    drafting = [r.strategy for r in lossless.results if any(s.draft_tokens for s in r.steps)]
    titles = [a.text for a in fig.layout.annotations]  # type: ignore[attr-defined]
    assert titles == drafting and "greedy" not in drafting
    bars = [t for t in fig.data if t.name == "drafted nodes"]  # type: ignore[attr-defined]
    run = next(r for r in lossless.results if r.strategy == drafting[0])
    assert list(bars[0].y) == [len(s.draft_tokens) for s in run.steps]


def test_the_entropy_figure_shows_every_run_with_head_labels(lossless: Comparison) -> None:
    fig = dv.entropy_figure(lossless)
    assert fig is not None
    names = [t.name for t in fig.data]  # type: ignore[attr-defined]
    assert names == ["greedy (reference)", *(r.strategy for r in lossless.results if r.strategy != "greedy")]
    first = fig.data[0]  # type: ignore[attr-defined]
    assert list(first.x) == [f"{layer}.{h}" for layer in range(2) for h in range(4)]  # heads labelled "L.H"
    want = lossless.greedy.attention_entropy
    assert want is not None
    assert np.allclose(np.asarray(first.z), want.numpy().reshape(len(want), -1), atol=1e-4)
    buttons = fig.layout.updatemenus[0].buttons  # type: ignore[attr-defined]
    assert [b.label for b in buttons] == names


def test_without_entropy_and_without_drafts_the_views_say_so_in_a_sentence() -> None:
    raw = tab.decode_compare({**BASE, "entropy": False, "strategies": ["greedy", "sample"], "temperature": 1.0},
                             Ctx())["raw"]  # fmt: skip
    views = tab.draw({"raw": raw, "selection": None}, Ctx())
    assert views["entropy"]["visible"] is False and "not recorded" in views["entropy_note"]
    assert views["trees"]["visible"] is False and views["trees_note"].startswith("No run drafted tokens")
    note = views["note"]
    assert views["grid"]["visible"] is False and ("departs" in note or "no departure" in note)


def test_a_session_import_redraws_the_views_from_the_restored_comparison(lossless: Comparison) -> None:
    """The session file keeps the inputs and the comparison's JSON; after an import `draw` redraws every view."""
    from headscope.app import main

    assert {"prompt", "strategies", "max_new_tokens", "lam", "result"} <= set(
        main.session_parts.parts["decoding"]
    )
    [(redraw, inputs, outputs)] = [r for r in main.session_parts.rebuilds if r[0].__name__ == "draw"]
    assert inputs[0] is main.session_parts.parts["decoding"]["result"]
    got = dict(zip(outputs, redraw(lossless.to_json(), None), strict=True))
    strip = next(
        v for v in got.values() if isinstance(v, dict) and (v.get("value") or {}).get("kind") == "strip"
    )
    assert [r["label"].split(" ")[0] for r in strip["value"]["rows"]] == ["greedy", *LOSSLESS[1:]]
