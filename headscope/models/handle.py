"""`ModelHandle`: one loaded model, its tokenizer, its hooks, its lock — the one path to a model's activations.

Every capability reads and writes activations through TransformerLens hook names (built by `models.hooks`) via
`handle.run(...)` / `handle.hooks(...)` / `handle.run_with_cache(...)`. Hooks are attached only inside `hooks()`,
which holds the handle's lock and removes exactly what it added, also on an exception. No capability calls the
bridge or takes the lock itself: `run` covers inference, gradients (`grad=True`) and KV-cached steps (`cache=`),
`exclusive()` holds the model for a multi-step job, `hf_attention(impl)` routes attention to a custom kernel.
The model's own parameters are frozen at load (headscope never trains them), so a `grad=True` run only builds a
graph for the tensors a capability itself makes trainable (LoFiT's offsets, integrated-gradients inputs, ...).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformers import PreTrainedTokenizerBase

from headscope.errors import InputError
from headscope.models.catalog import DEFAULT_MODEL, CatalogEntry, resolve
from headscope.models.device_map import DeviceMapSpec, Placement, place
from headscope.models.loading import Loaded, load_hf
from headscope.models.token_text import token_texts
from headscope.selection import HeadSet

HookFn = Callable[..., Any]
Hooks = Sequence[tuple[str, HookFn]]
DEFAULT_MAX_TOKENS = 2048  # eager paths hold N×N patterns per layer; the fused entropy path goes to n_ctx
# Hook-name suffix -> the bridge flag that must be on for that hook point to exist (`set_<flag>` toggles it).
_GATED_HOOKS = {
    "attn.hook_result": "use_attn_result",
    "hook_q_input": "use_split_qkv_input",
    "hook_k_input": "use_split_qkv_input",
    "hook_v_input": "use_split_qkv_input",
    "hook_mlp_in": "use_hook_mlp_in",
}


# A batch worker serves many jobs with one loaded model: inside `shared_handles(store)`, `ModelHandle.load` hands
# back the handle it already loaded for the same model and placement instead of loading again.
_SHARED: ContextVar[dict[tuple[Any, ...], ModelHandle] | None] = ContextVar("headscope_shared", default=None)


# `--device-map` reaches every command's `ModelHandle.load` through this (set by the CLI around the command).
_DEVICE_MAP: ContextVar[DeviceMapSpec | None] = ContextVar("headscope_device_map", default=None)


@contextmanager
def shared_handles(store: dict[tuple[Any, ...], ModelHandle]) -> Iterator[None]:
    token = _SHARED.set(store)
    try:
        yield
    finally:
        _SHARED.reset(token)


@contextmanager
def default_device_map(spec: DeviceMapSpec | None) -> Iterator[None]:
    """Inside the block, `ModelHandle.load` without a `device_map` of its own spreads the model as `spec` says."""
    token = _DEVICE_MAP.set(spec)
    try:
        yield
    finally:
        _DEVICE_MAP.reset(token)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class ModelFacts:
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    d_vocab: int
    n_ctx: int
    n_params: int


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    kind: str
    source: str
    sha256: str | None
    revision: str | None
    license: str


def _bridge_tokenizer(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    # The bridge reloads a tokenizer with add_bos_token=True unless told it already has one; that reload needs a
    # hub or folder name and would change tokenisation. Hand it a shallow copy that says so; the handle itself
    # always tokenises with the model's own tokenizer.
    tok = copy.copy(tokenizer)
    tok.init_kwargs = dict(tokenizer.init_kwargs, name_or_path=name, add_bos_token=True)
    return tok


def graph_node(act: Tensor) -> Tensor:
    """`act` as a node of the autograd graph of a `grad=True` run, for gradients w.r.t. activations.

    The model's weights are frozen, so the first activation a hook sees carries no graph: it becomes a leaf that
    requires grad. A later activation already depends on it and is returned as is — detaching it too would cut
    the paths from earlier nodes through it."""
    return act if act.requires_grad else act.detach().requires_grad_(True)


def _native_forward(attn_bridge: Any) -> Callable[..., Any]:
    hf_attn = attn_bridge.original_component

    def forward(*args: Any, **kwargs: Any) -> Any:
        return hf_attn(*args, **kwargs)

    return forward


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    ids = tokenizer("a").input_ids
    return tokenizer.bos_token_id is not None and len(ids) > 0 and ids[0] == tokenizer.bos_token_id


class ModelHandle:
    """A loaded model. Thread-safe: all hooked runs go through one re-entrant lock."""

    def __init__(
        self,
        loaded: Loaded,
        entry: CatalogEntry,
        device: torch.device | str | None = None,
        device_map: DeviceMapSpec | None = None,
    ):
        # A split model is booted on the CPU and then spread (models/device_map.py); its main device holds the
        # embeddings and the logits.
        self.device = torch.device("cpu" if device_map else device or default_device())
        self.tokenizer = loaded.tokenizer
        self.entry = entry
        self.load_seconds = loaded.seconds
        self.loaded_from_cache = loaded.from_cache
        self.lock = threading.RLock()
        model = loaded.model.to(self.device)  # pyright: ignore[reportArgumentType]
        self.bridge = TransformerBridge.boot_transformers(
            entry.name,
            hf_model=model,
            tokenizer=_bridge_tokenizer(self.tokenizer, entry.name),
            device=self.device,
        )
        self.bridge.eval()
        self.placement: Placement | None = None
        if device_map is not None:
            self.placement = place(self.bridge, model, device_map)
            self.device = torch.device(self.placement.main)
        for p in (*self.bridge.parameters(), *model.parameters()):
            p.requires_grad_(False)
        self.prepends_bos = _adds_bos(self.tokenizer)
        self.bridge.cfg.default_prepend_bos = self.prepends_bos
        self.hf_model = (
            model  # note: the bridge rewires its modules in place; it is no longer a plain HF model
        )
        cfg = self.bridge.cfg
        n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
        self.facts = ModelFacts(
            architecture=type(model).__name__,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            n_kv_heads=int(n_kv),
            d_head=cfg.d_head,
            d_model=cfg.d_model,
            d_vocab=int(model.config.vocab_size),
            n_ctx=int(cfg.n_ctx),
            n_params=sum(p.numel() for p in model.parameters()),
        )
        self.identity = ModelIdentity(
            entry.name, entry.kind, loaded.source, loaded.sha256, loaded.revision, entry.license
        )
        # Token limits, in one place: eager runs (N×N patterns) and the fused entropy path (O(N) memory).
        self.max_tokens = min(DEFAULT_MAX_TOKENS, self.facts.n_ctx)
        self.max_tokens_fused = self.facts.n_ctx
        self._points = dict(self.bridge.hook_dict)  # name (aliases included) -> HookPoint, built once
        self._hook_names = frozenset(self._points)
        # Hook levels start high so they never collide with the bridge's own context levels.
        self._levels = itertools.count(1_000_000)

    @classmethod
    def load(
        cls,
        model_id: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        device_map: DeviceMapSpec | None = None,
        allow_external: bool = True,
    ) -> ModelHandle:
        entry = resolve(model_id, allow_external=allow_external)
        device_map = device_map or _DEVICE_MAP.get()
        store, key = _SHARED.get(), (entry.name, device, device_map.key() if device_map else None)
        if store is not None and key in store:
            return store[key]
        t0 = time.perf_counter()
        handle = cls(load_hf(entry), entry, device, device_map)
        handle.load_seconds = time.perf_counter() - t0
        if store is not None:
            store[key] = handle
        return handle

    # -- text <-> tokens -------------------------------------------------------------------------------------
    def tokenize(self, text: str, *, max_tokens: int | None = None) -> Int[Tensor, "batch pos"]:
        """Exactly the ids the model's own tokenizer gives (a BOS only where the tokenizer adds one)."""
        if not isinstance(text, str) or not text.strip():
            raise InputError("text is empty")
        limit = max_tokens or self.max_tokens
        if len(text) > 40 * limit:  # refuse before tokenising megabytes
            raise InputError(f"text is too long: {len(text)} characters (limit about {40 * limit})")
        ids = self.tokenizer(text, add_special_tokens=True).input_ids
        if len(ids) > limit:
            raise InputError(f"text is {len(ids)} tokens long; the limit is {limit}")
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        ids = ids.flatten().tolist() if isinstance(ids, Tensor) else list(ids)
        return str(self.tokenizer.decode(ids))

    def str_tokens(self, ids: Iterable[int] | Tensor) -> list[str]:
        """Each token as text on its own; part of a UTF-8 character reads as its bytes ("\\xe2\\x80", not "�")."""
        ids = ids.flatten().tolist() if isinstance(ids, Tensor) else list(ids)
        return token_texts(self.tokenizer, ids)

    def head_set(self, text: str) -> HeadSet:
        """A head selection ("9.4, 12.*", "*.3") resolved and checked against this model's shape."""
        return HeadSet.parse(text, self.facts.n_layers, self.facts.n_heads)

    # -- hooks -----------------------------------------------------------------------------------------------
    def check_hook_names(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - self._hook_names)
        if unknown:
            raise InputError(f"unknown hook name(s): {', '.join(unknown[:5])}")

    @contextmanager
    def hooks(self, fwd_hooks: Hooks = (), bwd_hooks: Hooks = ()) -> Iterator[ModelHandle]:
        """Attach hooks for the duration of the block; holds the lock, removes them even on an exception.

        Hooks go straight onto the cached hook points, each tagged with a level unique to this block, and exactly
        those are removed at the end. (`bridge.hooks` would rebuild the whole alias map twice per entry, ~40 ms
        on SmolLM2 — more than a short forward pass.)
        """
        names = [n for n, _ in (*fwd_hooks, *bwd_hooks)]
        self.check_hook_names(names)
        with self.lock, self._gated_flags_if_needed(names):
            level = next(self._levels)
            added: list[tuple[Any, Literal["fwd", "bwd"]]] = []
            try:
                plan: tuple[tuple[Literal["fwd", "bwd"], Hooks], ...] = (
                    ("fwd", fwd_hooks),
                    ("bwd", bwd_hooks),
                )
                for direction, pairs in plan:
                    for name, fn in pairs:
                        self.bridge.check_hooks_to_add(name)  # gated hook points (e.g. split q/k/v inputs)
                        point = self._points[name]
                        point.add_hook(fn, dir=direction, level=level)
                        added.append((point, direction))
                yield self
            finally:
                for point, direction in added:
                    point.remove_hooks(dir=direction, level=level)

    @contextmanager
    def _gated_flags_if_needed(self, names: Iterable[str]) -> Iterator[None]:
        # The bridge gates hook points that cost memory or reroute the forward (per-head outputs, per-head q/k/v
        # residual forks, the MLP-branch input); switch each on only for the runs that hook it, then back off.
        names = list(names)
        wanted = {flag for suffix, flag in _GATED_HOOKS.items() if any(n.endswith(suffix) for n in names)}
        turned_on = [f for f in sorted(wanted) if not bool(getattr(self.bridge.cfg, f, False))]
        for flag in turned_on:
            getattr(self.bridge, f"set_{flag}")(True)
        try:
            yield
        finally:
            for flag in reversed(turned_on):
                getattr(self.bridge, f"set_{flag}")(False)

    @contextmanager
    def exclusive(self) -> Iterator[ModelHandle]:
        """Hold the model for a multi-step job (a decoding loop, a training run): no other run interleaves.

        Re-entrant: `run`/`hooks` inside the block take the same lock again. Long jobs in the app should rather
        call `run` per step, so other users' cheap views get the model between steps."""
        with self.lock:
            yield self

    @contextmanager
    def hf_attention(self, implementation: str) -> Iterator[None]:
        """For the length of the block, each attention bridge runs its own Hugging Face module with the model's
        attention implementation set to `implementation` (one registered with transformers' AttentionInterface).

        TransformerLens's attention bridges reimplement attention eagerly (scores → softmax → pattern); a kernel
        that must see exactly HF's post-rotary q/k and never form an N×N tensor needs the HF module itself. The
        attention hooks (`hook_pattern`, `hook_attn_scores`, ...) do not fire inside the block."""
        config = self.hf_model.config
        before = config._attn_implementation
        # object.__setattr__: bridge components forward plain attribute writes to the wrapped HF module
        patched = [block.attn for block in self.bridge.blocks]
        with self.lock:
            try:
                config._attn_implementation = implementation
                for attn in patched:
                    object.__setattr__(attn, "forward", _native_forward(attn))
                yield
            finally:
                for attn in patched:
                    if "forward" in attn.__dict__:
                        object.__delattr__(attn, "forward")
                config._attn_implementation = before

    # -- runs ------------------------------------------------------------------------------------------------
    def run(
        self,
        tokens: Int[Tensor, "batch pos"],
        *,
        fwd_hooks: Hooks = (),
        bwd_hooks: Hooks = (),
        grad: bool = False,
        cache: Any = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """One forward pass with hooks attached for its duration; the one way a capability runs the model.

        grad=False runs under `inference_mode`. grad=True builds an autograd graph (for hooks that add trainable
        tensors, or `torch.autograd.grad` w.r.t. hooked activations); the model's own weights stay frozen.
        cache: a transformers `DynamicCache` for incremental decoding; `tokens` are then only the new positions.
        (TransformerLens 3.9's attention bridges read `past_key_values` / `layer_past` while transformers 5.x
        passes `cache`: given under one name only, the bridge never writes the cache and every cached step
        silently attends to itself alone, so the same object is passed under both.)"""
        kwargs: dict[str, Any] = {}
        if cache is not None:
            kwargs = {"use_cache": True, "cache": cache, "layer_past": cache}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask.to(self.device)
        if position_ids is not None:  # tree drafts: a node's position is its depth, not its index
            kwargs["position_ids"] = position_ids.to(self.device)
        mode = torch.enable_grad() if grad else torch.inference_mode()
        with mode, self.hooks(fwd_hooks, bwd_hooks):
            return self.bridge(tokens.to(self.device), **kwargs)

    def forward(
        self, tokens: Int[Tensor, "batch pos"], *, fwd_hooks: Hooks = ()
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Inference-mode logits (`run` without gradients)."""
        return self.run(tokens, fwd_hooks=fwd_hooks)

    def run_with_cache(
        self, tokens: Int[Tensor, "batch pos"], names: Sequence[str], *, fwd_hooks: Hooks = ()
    ) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Tensor]]:
        """Logits and the activations at `names` (detached, on the handle's device)."""
        self.check_hook_names(names)
        store: dict[str, Tensor] = {}

        def saver(key: str) -> HookFn:
            # Keyed by the name asked for: an alias (hook_attn_out) reports under its canonical hook's name.
            def save(act: Tensor, hook: Any) -> Tensor:
                store[key] = act.detach().to(self.device)  # a no-op unless the blocks are spread over devices
                return act

            return save

        logits = self.forward(tokens, fwd_hooks=[*fwd_hooks, *((n, saver(n)) for n in names)])
        return logits, store

    def greedy(self, tokens: Int[Tensor, "batch pos"], max_new_tokens: int) -> list[int]:
        """Greedy continuation (full recompute each step: exact, and the reference other decoders compare to)."""
        ids = tokens.to(self.device)
        out: list[int] = []
        for _ in range(max_new_tokens):
            nxt = int(self.forward(ids)[0, -1].argmax())
            out.append(nxt)
            if nxt == self.tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, ids.new_tensor([[nxt]])], dim=1)
        return out

    # -- reports ---------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "identity": asdict(self.identity),
            "facts": asdict(self.facts),
            "device": str(self.device),
            "placement": self.placement.to_json() if self.placement else None,
            "dtype": str(next(self.hf_model.parameters()).dtype).removeprefix("torch."),
            "prepends_bos": self.prepends_bos,
            "max_tokens": self.max_tokens,
            "load_seconds": round(self.load_seconds, 3),
            "loaded_from_cache": self.loaded_from_cache,
        }
