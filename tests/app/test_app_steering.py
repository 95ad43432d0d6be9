"""Steering tab: its jobs are the `steer` CLI commands (the same JSON as `headscope steer ... --json`, and as the
library computed directly), its views show those numbers, the selection drives the heads site and LoFiT, and bad
input is one line, refused (never cut) on the server. The library's own oracles are in tests/unit/test_steering_*.py;
the Ray run of the tab's job is in tests/integration/test_steering_ray.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gradio_client import Client

from headscope.app import steering_tab as tab
from headscope.app.wiring import Ctx
from headscope.cli import main
from headscope.cli.steering import to_argv
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.steering.comparison import SideBySideConfig
from headscope.steering.contrastive import ContrastiveConfig, compare_vector, contrastive_vector
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.heldout import HeldOut

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = "tiny-llama"
POS, NEG = ["good and happy", "lovely day"], ["bad and sad", "awful day"]
STEER: dict[str, Any] = {
    "model": MODEL, "positives": "\n".join(POS), "negatives": "\n\n".join(NEG), "heldout": tab.NO_SET,
    "site": tab.SITES[0], "layer": 1, "alpha": 1.5, "prompts": "Hello there\nThe day", "instruction": "Be glad.",
    "position": "all", "new_tokens": 3, "selection": None,
}  # fmt: skip
LOFIT: dict[str, Any] = {
    "model": MODEL, "task": "antonyms", "scope": tab.LOFIT_SCOPES[0], "k": 1, "steps": 1, "random_sets": 2,
    "seed": 0, "instruction": "Opposite:", "selection": None,
}  # fmt: skip


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main([*argv, "--json"]) in (0, None)
    return json.loads(capsys.readouterr().out)


def test_the_contrastive_job_is_its_command_and_the_views_show_it(
    tiny_llama: ModelHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tab.steer_run(STEER, Ctx())["raw"]
    assert raw == _cli(to_argv(tab.steer_config(STEER)), capsys)  # what a cluster runs returns the same
    sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(1))  # the library, called directly
    ref = compare_vector(tiny_llama, sv, ["Hello there", "The day"], SteerConfig(1.5, "all"),
                         SideBySideConfig(GenConfig(3), "Be glad."), texts=HeldOut(tuple(POS), tuple(NEG), False))  # fmt: skip
    assert raw == ref.to_json()
    out = tab.steer_draw({"raw": raw}, Ctx())
    table = out["table"]["value"]
    assert [r[0] for r in table["data"]] == ["none", "prompting", "steering", "steering + prompting"]
    col = table["headers"].index("margin effect (nats / text)")
    steering = ref.evaluation.row("steering").measures["margin_effect"]
    assert table["data"][2][col] == pytest.approx(steering.value, abs=1e-4)
    assert table["data"][2][col + 1] == f"[{steering.low:.3f}, {steering.high:.3f}]"
    assert "perplexity (× none)" in table["headers"] and out["table"]["visible"] is True
    (left,), (right,) = out["unsteered"]["rows"], out["steered"]["rows"]
    assert left["ids"] == list(ref.unsteered.token_ids) and right["ids"] == list(ref.steered.token_ids)
    assert right["values"] == pytest.approx([t["change"] for t in ref.tokens], abs=1e-6)
    assert (out["steered"]["vmin"], out["steered"]["vmax"]) == (-1.0, 1.0)
    assert "layer **1**" in out["summary"] and "in-sample" in out["legend"]
    assert f"adds a vector of norm {abs(ref.alpha) * ref.ref_norm:.2f}" in out["summary"]  # α × the norm
    assert out["summary"].endswith("Prompting: “Be glad.”") and "Margin effect **" in out["summary"]
    assert len(out["texts"]["value"]["data"]) == 2 * 4  # every prompt × condition
    assert tab.steer_draw({"raw": None}, Ctx()) == {}  # a session import with no run redraws nothing


def test_the_selection_drives_the_heads_site(client: Client, app_url: str, tiny_llama: ModelHandle) -> None:
    c = Client(app_url, verbose=False)
    args = {**STEER, "site": tab.SITES[1], "prompts": "Hi", "instruction": ""}
    args.pop("selection")
    with pytest.raises(Exception, match="no head is selected"):
        c.predict(*args.values(), api_name="/steer_contrastive")
    assert c.predict("1.1, 1.3", MODEL, api_name="/selection_set") == ("1.1, 1.3", "")
    raw = c.predict(*args.values(), api_name="/steer_contrastive")
    assert raw["site"] == "heads" and raw["heads"] == "1.1, 1.3" and raw["layer"] is None
    assert raw["evaluation"]["conditions"] == ["none", "steering"]  # no instruction: no prompting rows


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"positives": " \n"}, "the positive list is empty"),
        ({"layer": 5}, r"layer must be an integer in \[0, 1\]"),
        ({"layer": 1.5}, "layer must be an integer"),
        ({"alpha": 1000.0}, "alpha must be in"),
        ({"negatives": "x" * 30_000}, "the limit is 20,000"),
        ({"prompts": "\n".join("p" * 9)}, "give 1 to 8 prompts"),
        ({"instruction": "x" * 501}, "the limit is 500"),
        ({"new_tokens": 10_000}, r"new tokens must be an integer in \[1, 48\]"),
        ({"heldout": "/etc/passwd"}, "held-out texts must be one of"),
    ],
)
def test_contrastive_bad_input_is_refused_before_any_work(change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        tab.steer_run({**STEER, **change}, Ctx())


def test_lofit_job_verdict_histogram_and_grid(
    tiny_llama: ModelHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tab.lofit_run(LOFIT, Ctx())["raw"]
    cli = _cli(to_argv(tab.lofit_config(LOFIT)), capsys)
    assert {**raw, "seconds": 0} == {**cli, "seconds": 0}  # the command's JSON (but for its wall time)
    out = tab.lofit_draw({"raw": raw, "selection": None, "model": MODEL}, Ctx())
    chance = raw["chance"]
    assert out["summary"].startswith(f"LoFiT heads `{raw['heads']}`: **{raw['verdict']}**")
    assert raw["verdict"].startswith("not distinguishable from random heads (p = ") == (
        chance["p_value"] >= 0.05
    )
    fig = out["chance"]["value"]
    assert list(fig.data[0].x) == chance["random_accuracies"] and out["chance"]["visible"] is True
    assert fig.layout.shapes[0].x0 == chance["selected"]["value"]  # the selection marked
    assert out["grid"]["marks"] == {raw["heads"]: "●"}
    table = out["table"]["value"]
    col = table["headers"].index("held-out accuracy (share)")
    assert table["data"][2][col] == chance["selected"]["value"]


def test_lofit_restricted_to_the_selection_refuses_a_larger_k() -> None:
    from headscope.app.selection_bar import Selection

    sel = Selection(heads="1.1, 1.3", n_layers=2, n_heads=4, model=MODEL)
    with pytest.raises(InputError, match="at most 2, the selection's size"):
        tab.lofit_run({**LOFIT, "scope": tab.LOFIT_SCOPES[1], "k": 3, "selection": sel}, Ctx())
    with pytest.raises(InputError, match=r"random sets must be an integer in \[0, 50\]"):
        tab.lofit_run({**LOFIT, "random_sets": 51}, Ctx())
