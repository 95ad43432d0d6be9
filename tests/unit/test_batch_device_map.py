"""--device-map on CPU: a model with some blocks offloaded to disk gives the single-device answer, through the
handle's hooks (the locality dial edits attention scores inside an offloaded block) and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from headscope.cli import main
from headscope.errors import InputError
from headscope.models import ModelHandle, hooks
from headscope.models.device_map import DeviceMapSpec, parse_max_memory, plan_blocks

pytestmark = pytest.mark.usefixtures("one_thread")
TEXT = "The cat sat on the mat. The cat sat on"


def _budget_for(handle: ModelHandle, n_blocks_in_memory: int) -> int:
    """CPU bytes that hold the embeddings and the first n blocks, so the rest must go to disk."""
    sizes = [
        sum(p.numel() * p.element_size() for p in b.original_component.parameters())
        for b in handle.bridge.blocks
    ]
    rest = sum(p.numel() * p.element_size() for p in handle.hf_model.parameters()) - sum(sizes)
    return rest + sum(sizes[:n_blocks_in_memory]) + 8


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    plain = ModelHandle.load(request.param, device="cpu")
    spec = DeviceMapSpec("auto", {"cpu": _budget_for(plain, 1)}, str(tmp_path_factory.mktemp("offload")))
    return plain, ModelHandle.load(request.param, device_map=spec)


def test_disk_offload_gives_the_single_device_answer(pair: tuple[Any, Any]) -> None:
    plain, split = pair
    assert split.placement.blocks == ("cpu", "disk") and split.device == torch.device("cpu")
    # The offloaded block holds no weights between runs (every alias included).
    layer = split.bridge.blocks[1].original_component
    assert {p.device.type for _, p in layer.named_parameters(remove_duplicate=False)} == {"meta"}
    tokens = plain.tokenize(TEXT)
    names = [hooks.pattern(1), hooks.resid(1, "post"), hooks.z(1)]
    logits_a, cache_a = plain.run_with_cache(tokens, names)
    logits_b, cache_b = split.run_with_cache(tokens, names)
    assert torch.equal(logits_a, logits_b) and all(torch.equal(cache_a[n], cache_b[n]) for n in names)
    assert plain.greedy(tokens, 6) == split.greedy(tokens, 6)


def test_capabilities_work_through_hooks_on_an_offloaded_block(pair: tuple[Any, Any]) -> None:
    from headscope.attention import LocalityDial
    from headscope.probes import SweepConfig, eval_tokens, sweep_locality

    plain, split = pair
    cfg = SweepConfig(lambdas=(0.0, 0.7), dial=LocalityDial(mode="distance"))
    out = []
    for handle in (plain, split):
        tokens, _ = eval_tokens(handle, TEXT, max_tokens=64)
        out.append(sweep_locality(handle, tokens, cfg).to_json())
    assert out[0] == out[1]
    assert out[0]["rows"][0] != out[0]["rows"][1]  # the dial really acted (also inside the offloaded block)


def test_cli_device_map_equals_one_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["entropy", "--model", "tiny-llama", "--text", TEXT, "--json"]
    assert main(base) == 0
    want = json.loads(capsys.readouterr().out)
    plain = ModelHandle.load("tiny-llama", device="cpu")
    budget = f"cpu={_budget_for(plain, 0)}"
    assert main([*base, "--device-map", "auto", "--max-memory", budget, "--offload-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == want
    assert main(["info", "tiny-llama", "--device-map", "balanced", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["placement"]["blocks"] == ["cpu", "cpu"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "cpu", "--device-map", "auto"], "not both"),
        (["--max-memory", "cpu=1GiB"], "--max-memory needs --device-map"),
        (["--device-map", "auto", "--max-memory", "cpu"], "look like cuda:0=20GiB"),
        (["--device-map", "auto", "--max-memory", "tpu=1GiB"], "unknown device 'tpu'"),
        (["--device-map", "auto", "--max-memory", "cpu=lots"], "cannot read the size"),
        (["--device-map", "auto", "--max-memory", "cpu=1KB"], "do not fit on cpu"),
        (["--device-map", "auto", "--max-memory", "cpu=120KB"], "give an offload folder"),
    ],
)
def test_bad_device_map_options_give_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["entropy", "--model", "tiny-llama", "--text", "abc", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_plans_fill_devices_in_order_or_balance_the_gpus() -> None:
    gib = 2**30
    budgets = {"cuda:0": 10 * gib, "cuda:1": 10 * gib, "cpu": 10 * gib}
    sizes = [2 * gib] * 8
    main_dev, auto = plan_blocks(sizes, gib, DeviceMapSpec("auto", budgets))
    assert main_dev == "cuda:0" and auto == ["cuda:0"] * 4 + ["cuda:1"] * 4
    _, balanced = plan_blocks(sizes, gib, DeviceMapSpec("balanced", budgets))
    assert balanced == ["cuda:0"] * 4 + ["cuda:1"] * 4
    _, spill = plan_blocks(
        sizes, gib, DeviceMapSpec("auto", {**budgets, "cuda:1": 3 * gib, "cpu": 5 * gib}, "/x")
    )
    assert spill == ["cuda:0"] * 4 + ["cuda:1", "cpu", "cpu", "disk"]
    assert parse_max_memory("cuda:0=1GiB, cpu=512MiB") == {"cuda:0": gib, "cpu": gib // 2}
    with pytest.raises(InputError, match="device map must be one of"):
        DeviceMapSpec("sequential")
