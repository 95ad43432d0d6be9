"""Models larger than one device: place a booted handle's transformer blocks across GPUs, CPU memory and disk.

Placement is done with accelerate's own machinery (`AlignDevicesHook`, offloaded weight maps), but at the level
of TransformerBridge blocks, after the bridge is booted: TransformerLens 3.9 refuses disk offload and mixed
CPU/GPU maps in `boot_transformers`, because its wrapped components (e.g. the norm bridges) read parameters
without going through the Hugging Face sub-module whose forward accelerate hooks. The hook therefore goes on each
block's Hugging Face decoder layer (the bridge's `BlockBridge` calls it as a whole; a hook on the `BlockBridge`
itself would recurse, since bridge components forward attribute writes to the wrapped module), with
`place_submodules=True` so every weight inside the block, bridge-wrapped or not, is on the execution device for
the block's forward and gone again after it.

Meaning of a block's target, as in accelerate's `dispatch_model`:
- `cuda:k` (or `cpu` when the main device is the CPU): the block's weights live and run there; its inputs are moved
  there and its outputs moved back to the main device, so hooks inside the block see tensors on the block's device.
- `cpu` while the main device is a GPU: weights wait in CPU memory and run on the main device (CPU offload).
- `disk`: weights wait in safetensors files under the offload folder and run on the main device.
Embeddings, the final norm and the unembedding stay on the main device, where logits land.
The whole model is loaded into CPU memory first and then placed: peak CPU memory at load is the model's size.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from headscope import checks
from headscope.codec import JsonCodec
from headscope.errors import InputError

STRATEGIES = ("auto", "balanced")
OFFLOAD_TARGETS = ("cpu", "disk")


@dataclass(frozen=True)
class DeviceMapSpec:
    """How to spread a model: a strategy, optional per-device memory budgets in bytes, an offload folder."""

    strategy: str = "auto"
    max_memory: Mapping[str, int] = field(default_factory=dict)
    offload_dir: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"device map must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not isinstance(self.max_memory, Mapping):
            raise InputError(f"max memory must map device names to byte counts, got {self.max_memory!r:.60}")
        budgets = {}
        for dev, size in self.max_memory.items():
            if not isinstance(dev, str):
                raise InputError(f"unknown device {dev!r} in max memory (use cuda:N or cpu)")
            _check_device_name(dev)
            budgets[dev] = checks.integer(size, f"max memory for {dev} (bytes)", 0)
        # the checked ints, in a copy the caller cannot change
        object.__setattr__(self, "max_memory", budgets)
        if self.offload_dir is not None and not isinstance(self.offload_dir, str):
            raise InputError(f"offload folder must be a path, got {self.offload_dir!r:.60}")

    def key(self) -> tuple[Any, ...]:
        return (self.strategy, tuple(sorted(self.max_memory.items())), self.offload_dir)


def _check_device_name(dev: str) -> None:
    if dev == "cpu" or (dev.startswith("cuda:") and dev[5:].isdigit()):
        return
    raise InputError(f"unknown device {dev!r} in max memory (use cuda:N or cpu)")


def parse_max_memory(text: str) -> dict[str, int]:
    """'cuda:0=20GiB,cpu=8GiB' → {'cuda:0': 21474836480, 'cpu': 8589934592}; a bare number is bytes."""
    from accelerate.utils import convert_file_size_to_int

    out: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        dev, sep, size = part.partition("=")
        dev = dev.strip()
        if not sep:
            raise InputError(f"--max-memory entries look like cuda:0=20GiB or cpu=512MB, got {part!r}")
        _check_device_name(dev)
        size = size.strip()
        try:
            out[dev] = int(size) if size.isdigit() else int(convert_file_size_to_int(size))
        except (ValueError, TypeError):
            raise InputError(f"--max-memory: cannot read the size {size!r} for {dev}") from None
    return out


def _default_budgets() -> dict[str, int]:
    import psutil

    budgets = {f"cuda:{i}": torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())}
    budgets["cpu"] = int(psutil.virtual_memory().available)
    return budgets


def _nbytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def plan_blocks(sizes: list[int], rest: int, spec: DeviceMapSpec) -> tuple[str, list[str]]:
    """The main device and a target per block (`cuda:k`, `cpu` or `disk`) within the memory budgets.

    auto fills devices in order (GPUs, then CPU, then disk); balanced first spreads the blocks evenly over the GPUs.
    The main device (the first GPU with a budget, else the CPU) also holds `rest` bytes (embeddings, unembedding)."""
    budgets = {**_default_budgets(), **spec.max_memory}
    gpus = [d for d in budgets if d.startswith("cuda:") and budgets[d] > 0]
    main = gpus[0] if gpus else "cpu"
    free = {d: budgets.get(d, 0) for d in [*gpus, "cpu"]}
    free[main] -= rest
    if free[main] < 0:
        raise InputError(f"the embeddings and unembedding ({rest / 2**20:.1f} MiB) do not fit on {main}")
    if spec.strategy == "balanced" and len(gpus) > 1:
        share = math.ceil(sum(sizes) / len(gpus))
        for d in gpus:
            free[d] = min(free[d], share + (rest if d == main else 0))
    targets: list[str] = []
    order = [*gpus, "cpu"]
    for size in sizes:
        dev = next((d for d in order if free[d] >= size), "disk")
        if dev != "disk":
            free[dev] -= size
        targets.append(dev)
    if "disk" in targets and spec.offload_dir is None:
        raise InputError(
            "the model does not fit in the memory budgets; give an offload folder (--offload-dir)"
        )
    return main, targets


@dataclass(frozen=True)
class Placement(JsonCodec):
    main: str
    blocks: tuple[str, ...]  # target per block: a device, or "cpu"/"disk" for offloaded weights
    offload_dir: str | None


def _move_rest(hf_model: torch.nn.Module, block_tensors: set[int], main: torch.device) -> None:
    # In place (`.data`), so tied weights (embedding = unembedding) stay one tensor.
    for module in hf_model.modules():
        for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            if id(t) not in block_tensors and t.device != main:
                t.data = t.data.to(main)


def _offload(layer: torch.nn.Module, target: str, main: torch.device, folder: Path | None) -> None:
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module
    from accelerate.utils import (
        OffloadedWeightsLoader,
        named_module_tensors,
        offload_state_dict,
        set_module_tensor_to_device,
    )

    # The same names the hook will ask for (bridge modules hide their aliases from `state_dict`).
    names = [n for n, _ in named_module_tensors(layer, include_buffers=False, recurse=True)]
    params = dict(layer.named_parameters())
    state = {n: params[n].detach().to("cpu").clone() for n in names}
    if target == "disk":
        assert folder is not None
        offload_state_dict(str(folder), state)
        weights = OffloadedWeightsLoader(save_folder=str(folder))
    else:
        weights = OffloadedWeightsLoader(state_dict=state)
    for name in names:
        set_module_tensor_to_device(layer, name, "meta")
    for buf in layer.buffers():  # buffers are small and not offloaded: they wait on the execution device
        buf.data = buf.data.to(main)
    hook = AlignDevicesHook(execution_device=main, offload=True, weights_map=weights, place_submodules=True)
    add_hook_to_module(layer, hook)


def _on_device(layer: torch.nn.Module, target: str) -> None:
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    layer.to(target)
    add_hook_to_module(layer, AlignDevicesHook(execution_device=target, io_same_device=True))


def place(bridge: Any, hf_model: torch.nn.Module, spec: DeviceMapSpec) -> Placement:
    """Spread a booted bridge's blocks as planned; everything else goes to the main device."""
    layers = [block.original_component for block in bridge.blocks]
    sizes = [_nbytes(layer) for layer in layers]
    main, targets = plan_blocks(sizes, _nbytes(hf_model) - sum(sizes), spec)
    main_dev = torch.device(main)
    root = None
    if "disk" in targets:
        base = Path(spec.offload_dir) if spec.offload_dir else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="headscope-offload-", dir=base))
        weakref.finalize(bridge, shutil.rmtree, root, True)  # the offloaded weights go with the model
    block_tensors = {id(t) for layer in layers for t in (*layer.parameters(), *layer.buffers())}
    _move_rest(hf_model, block_tensors, main_dev)
    for i, (layer, target) in enumerate(zip(layers, targets, strict=True)):
        if target == main:
            layer.to(main_dev)
        elif target in OFFLOAD_TARGETS:  # (a "cpu" target is offload only here: main is a GPU)
            _offload(layer, target, main_dev, root / f"block{i}" if root else None)
        else:
            _on_device(layer, target)
    return Placement(main, tuple(targets), str(root) if root else None)
