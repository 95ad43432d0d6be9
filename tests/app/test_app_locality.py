"""The Attention & locality tab through gradio_client (oracles: the CLI's entropy report, a hand-made dialed
softmax, the probes' own head pattern), plus its server-side input checks called directly."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client

from headscope.app import locality_tab as tab
from headscope.app.views import decode_pattern
from headscope.app.wiring import Ctx
from headscope.models import hooks
from headscope.probes import head_patterns, induction_scores

TEXT = "The cat sat on the mat. Then it slept, and the sun set."
MODEL = "tiny-llama"


def _analyse(
    client: Client, lam: float, scope: str = "all heads", model: str = MODEL, text: str = TEXT
) -> dict[str, Any]:
    """The endpoint returns the `EntropyView` JSON; the views are drawn from it (as the page's follow-up event)."""
    return client.predict(model, text, lam, "distance", "uniform", 3.0, scope, api_name="/locality_analyse")


def _views(raw: dict[str, Any], selection: Any = None) -> dict[str, Any]:
    return tab.draw_entropy({"raw": raw, "selection": selection}, Ctx())


def _entropy_bits(p: torch.Tensor) -> float:
    """Mean over rows of −Σ p log2 p (the oracle: plain arithmetic, not the probes module)."""
    rows = [-sum(x * math.log2(x) for x in r.tolist() if x > 0) for r in p]
    return sum(rows) / len(rows)


def test_analyse_returns_views_not_id_lists(client: Client) -> None:
    raw = _analyse(client, 0.5)
    v = _views(raw)
    summary, grid, delta, strip, table, path = (
        v[k] for k in ("summary", "grid", "delta", "strip", "heads", "file")
    )
    assert np.array(grid["z"]).shape == (2, 4) and grid["unit"] == "bits" and grid["zmin"] == 0.0
    assert "λ = 0.5" in grid["title"] and "λ = 0.5" in summary
    assert delta["scale"] == "diverging" and np.array(delta["z"]).shape == (2, 4)
    assert len(strip["rows"][0]["tokens"]) == raw["n_tokens"] and strip["unit"] == "bits"
    assert table["headers"][2] == "entropy (bits)" and len(table["data"]) == 8
    assert path.endswith(".json") and raw["dial"]["lambda"] == 0.5
    assert "token_ids" not in summary
    from headscope.app.state import STORE

    # induction scores are computed once per model and reused: still the probes' own numbers
    want = induction_scores(STORE.get(MODEL))
    np.testing.assert_allclose(raw["probes"]["induction_score"], want, atol=1e-6)


def test_entropy_grid_equals_the_cli_report_at_lambda_zero(client: Client) -> None:
    from headscope.app.state import STORE
    from headscope.probes.report import entropy_report

    raw = _analyse(client, 0.0, model="tiny-gpt2")
    grid, delta = _views(raw)["grid"], _views(raw)["delta"]
    report = entropy_report(STORE.get("tiny-gpt2"), TEXT, backend="eager")
    np.testing.assert_allclose(grid["z"], report["entropy_bits"], atol=1e-4)
    np.testing.assert_allclose(raw["probes"]["entropy_bits"], report["entropy_bits"], atol=1e-5)
    assert grid["zmax"] == pytest.approx(report["uniform_ceiling_bits"], abs=1e-6)  # the fixed colour scale
    assert "empty" in delta  # nothing to compare at λ = 0
    heads = _views(raw)["heads"]
    assert "Δ vs λ = 0 (bits)" not in heads["headers"] and None not in heads["data"][0]  # no empty column
    assert "Δ vs λ = 0 (bits)" in _views(_analyse(client, 0.5, model="tiny-gpt2"))["heads"]["headers"]


def test_the_dial_on_the_selection_moves_only_the_selected_head(app_url: str) -> None:
    """Select head 1.2, dial λ = 1 on it alone: every other head keeps its λ = 0 entropy exactly, and 1.2's equals
    a softmax of the recorded scores minus |i − j|, computed here by hand."""
    from headscope.app.state import STORE

    c = Client(app_url, verbose=False)
    assert c.predict("1.2", MODEL, api_name="/selection_set") == ("1.2", "")
    raw = _analyse(c, 1.0, scope="selected heads only")
    selection = {"heads": "1.2", "n_layers": 2, "n_heads": 4, "model": MODEL}
    grid, table = _views(raw, selection)["grid"], _views(raw, selection)["heads"]
    assert grid["selected"] == ["1.2"] and raw["dial"]["heads"] == "1.2" and raw["shown_heads"] == [[1, 2]]
    base = np.array(raw["baseline"]["entropy_bits"])
    got = np.array(raw["probes"]["entropy_bits"])
    moved = np.argwhere(got != base).tolist()
    assert moved == [[1, 2]]
    handle = STORE.get(MODEL)
    tokens = handle.tokenize(TEXT)
    _, cache = handle.run_with_cache(tokens, [hooks.scores(1)])
    n = tokens.shape[1]
    i = torch.arange(n)
    scores = cache[hooks.scores(1)][0, 2].double() - (i[:, None] - i[None, :]).abs().double()
    want = _entropy_bits(torch.softmax(scores, -1))
    assert got[1, 2] == pytest.approx(want, abs=1e-5)
    assert [row[-1] for row in table["data"]].count("✓") == 1


def test_pattern_endpoint_equals_the_probes_head_pattern(client: Client) -> None:
    from headscope.app.state import STORE

    view = client.predict(
        MODEL, TEXT, 0.0, "distance", "uniform", 1.0, "all heads", "1.3", api_name="/locality_pattern"
    )
    n = len(view["tokens"])
    a = decode_pattern(view["heads"][0]["b64"], n)
    handle = STORE.get(MODEL)
    want = head_patterns(handle, handle.tokenize(TEXT), [(1, 3)])[(1, 3)]
    np.testing.assert_allclose(a, want, atol=1e-4)
    assert view["heads"][0]["label"] == "L1 H3" and "λ = 0" in view["title"]
    assert view["ids"] == handle.tokenize(TEXT)[0].tolist()


def test_pattern_of_the_selected_heads(app_url: str) -> None:
    c = Client(app_url, verbose=False)
    c.predict("0.1, 1.3", MODEL, api_name="/selection_set")
    view = c.predict(
        MODEL, TEXT, 0.6, "distance", "uniform", 1.0, "all heads", "", api_name="/locality_pattern"
    )
    assert [h["label"] for h in view["heads"]] == ["L0 H1", "L1 H3"] and "λ = 0.6" in view["title"]


def test_sweep_endpoint(client: Client) -> None:
    raw = client.predict(MODEL, TEXT, "block", "uniform", 1.0, "all heads", api_name="/locality_sweep")
    drawn = tab.draw_sweep({"raw": raw}, Ctx())
    status, table = drawn["status"], drawn["table"]
    assert [r["lambda"] for r in raw["rows"]] == list(tab.SWEEP_LAMBDAS)
    assert raw["rows"][0]["kl"] == 0.0 and raw["target"] == "block"
    assert status.startswith("λ sweep done") and len(table["data"]) == len(tab.SWEEP_LAMBDAS)


def test_sweep_dials_any_selection(app_url: str) -> None:
    """Different heads in different layers are one dial (headscope.attention's HeadSet-aware dial)."""
    c = Client(app_url, verbose=False)
    c.predict("0.1, 1.3", MODEL, api_name="/selection_set")
    raw = c.predict(
        MODEL, TEXT, "distance", "uniform", 1.0, "selected heads only", api_name="/locality_sweep"
    )
    assert raw["dial"]["heads"] == "0.1, 1.3"


def test_bad_input_over_the_api_is_a_clear_error(client: Client) -> None:
    with pytest.raises(Exception, match="text is empty"):
        _analyse(client, 0.5, text="   ")
    with pytest.raises(Exception, match=r"text is \d+ tokens long; the limit is 256"):
        client.predict(
            MODEL,
            " w" * 300,
            0.0,
            "distance",
            "uniform",
            1.0,
            "all heads",
            "0.0",
            api_name="/locality_pattern",
        )
    with pytest.raises(Exception, match="no head is selected"):
        _analyse(Client(client.src, verbose=False), 0.5, scope="selected heads only")
    assert _analyse(client, 0.0)


ANALYSE: tuple[Any, ...] = ("tiny-llama", TEXT, 0.5, "distance", "uniform", 1.0, "all heads", None)
NAMES = ("model", "text", "lam", "mode", "schedule", "beta", "scope", "selection")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({2: float("nan")}, r"lambda must be in \[0, 1\], got nan"),
        ({2: 5}, r"lambda must be in \[0, 1\], got 5"),  # refused with the range, never clamped
        ({2: "x"}, "lambda must be a number"),
        ({4: "progressive", 5: 0.5}, r"beta must be in \[1, 20\]"),
        ({4: "explicit"}, "schedule must be one of"),
        ({3: "global"}, "mode must be one of"),
        ({6: "some heads"}, "dial scope must be one of"),
        ({1: None}, "text must be text"),
        ({1: "a" * 20_001}, "text is 20,001 characters long; the limit is 20,000"),  # refused, never cut
        ({0: "../etc/passwd"}, "unknown model"),
    ],
)
def test_analyse_validates_server_side(change: dict, message: str) -> None:
    args: list[Any] = list(ANALYSE)
    for k, v in change.items():
        args[k] = v
    with pytest.raises(gr.Error, match=message) as err:
        _event(tab.analyse, dict(zip(NAMES, args, strict=True)))
    assert "\n" not in str(err.value)


def _event(fn: Any, inputs: dict[str, Any]) -> Any:
    """`fn` as the page's event calls it: through `wiring.handler` (user_errors: one readable line)."""
    from headscope.app.wiring import handler

    return handler(fn, inputs, {"raw": None, "attention": None})(*inputs.values())


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ("abc", "abc"),
        ("2.0", r"layer 2 in '2.0' is out of range \(the model has layers 0..1\)"),
        ("0.9", r"head 9 in '0.9' is out of range"),
        ("0.*, 1.*", r"8 heads to show; the viewer shows at most 6"),
        ("", "no head to show"),
    ],
)
def test_pattern_heads_give_one_readable_line(heads: str, message: str) -> None:
    names = (*NAMES, "heads")
    args = (MODEL, TEXT, 0.0, "distance", "uniform", 1.0, "all heads", None, heads)
    with pytest.raises(gr.Error, match=message) as err:
        _event(tab.pattern, dict(zip(names, args, strict=True)))
    assert "\n" not in str(err.value)


def test_the_sweep_job_carries_the_equivalent_cli_command(
    app_url: str, capsys: pytest.CaptureFixture
) -> None:
    """A cluster runner executes `spec.command` instead of the in-process work: both must give the same rows."""
    import json

    from headscope.attention import LocalityDial
    from headscope.cli import main as cli
    from headscope.cli.probes import to_argv
    from headscope.probes import SweepConfig

    c = Client(app_url, verbose=False)
    c.predict("0.1, 1.3", MODEL, api_name="/selection_set")
    raw = c.predict(
        MODEL, TEXT, "distance", "progressive", 2.0, "selected heads only", api_name="/locality_sweep"
    )
    dial = LocalityDial(schedule="progressive", beta=2.0, heads="0.1, 1.3")
    cfg = SweepConfig(lambdas=tab.SWEEP_LAMBDAS, dial=dial)
    argv = [*to_argv(cfg, model=MODEL, text=TEXT, max_tokens=tab.SWEEP_TOKENS), "--json"]
    capsys.readouterr()
    assert cli(argv) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["rows"] == raw["rows"] and got["dial"] == raw["dial"] and got["dial"]["heads"] == "0.1, 1.3"


def test_the_entropy_view_job_carries_the_equivalent_cli_command(
    app_url: str, capsys: pytest.CaptureFixture
) -> None:
    """`headscope locality view --json` with the tab's dial and shown heads gives the tab's JSON exactly."""
    import json

    from headscope.attention import LocalityDial
    from headscope.cli import main as cli
    from headscope.cli.probes import to_argv
    from headscope.probes.view import ViewConfig

    c = Client(app_url, verbose=False)
    c.predict("0.1, 1.3", MODEL, api_name="/selection_set")
    raw = _analyse(c, 0.4, scope="selected heads only")
    cfg = ViewConfig(LocalityDial(lam=0.4, beta=3.0, heads="0.1, 1.3"), "0.1, 1.3", tab.APP_MAX_TOKENS)
    capsys.readouterr()
    assert cli([*to_argv(cfg, model=MODEL, text=TEXT), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == raw
