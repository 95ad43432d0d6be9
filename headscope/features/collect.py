"""Activations for SAE training: the offline Wikipedia summaries, split as the localist models split them (by a hash
of the title: train / validation / test), packed into fixed windows, run through the handle once for several hooks.

- Windows ("plain" rendering): each split's articles in title order, each followed by a document separator
  (`<|endoftext|>` where the tokenizer has it, else EOS), concatenated and cut into windows of `ctx` tokens.
- Windows ("chat" rendering, issue 24): the same split's articles as the model's chat sees text. Window i is a
  conversation rendered through the model's chat template (the template's default system prompt included):
  the user asks about article i's title (one of `CHAT_ASKS`), the assistant answers with the article, then the
  same for articles i+1, i+2, ... until the conversation reaches `ctx` tokens; the window is its first `ctx`
  tokens, so every window starts at a conversation's position 0, as a chat does. Articles are taken in the order
  of a hash of their title (every letter of the alphabet in the first windows). No model generation: the answers
  are the articles themselves.
- Position 0 of every window is dropped: the first position of any sequence is an attention sink whose residual
  norm is tens of times the others (SmolLM2), so it would dominate an SAE's loss and its explained variance.
- One forward pass fills every requested hook, and stops right after the deepest one (a hook raises), so layers
  past it and the unembedding are never run.
- Stored as fp16 `.npy` memory maps under `$HEADSCOPE_CACHE/activations/<model>-<sha>/ctx<N>/<split>/`, one file per
  hook plus the window token ids; a `meta.json` records how many windows each hook holds, so an interrupted
  collection resumes and later jobs reuse what is there. Never in the repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Int
from numpy.lib.format import open_memmap
from torch import Tensor

from headscope.data import Article, excerpt_articles, wiki_articles
from headscope.errors import InputError
from headscope.features.sites import Site
from headscope.localist.corpus import SPLITS, Split, split_articles
from headscope.models.handle import ModelHandle
from headscope.models.loading import cache_root
from headscope.progress import Progress, steps

DEFAULT_CTX = 128
Corpus = Literal["wiki", "excerpt"]  # the full summaries, or the shipped excerpt (tests, no package)
CORPORA: tuple[str, ...] = ("wiki", "excerpt")
Render = Literal["plain", "chat"]  # how the articles become windows (module docstring)
RENDERS: tuple[str, ...] = ("plain", "chat")
# what the user asks in a "chat" window (article j in chat order gets CHAT_ASKS[j % 5])
CHAT_ASKS = (
    "Tell me about {}.",
    "What do you know about {}?",
    "Write a short paragraph about {}.",
    "Give me an overview of {}.",
    "Explain {} briefly.",
)


class _Enough(Exception):
    """Raised by the hook on the deepest site: the rest of the forward pass is not needed."""


def separator_id(handle: ModelHandle) -> int:
    tok = handle.tokenizer
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(eot, int) and eot != tok.unk_token_id and eot >= 0:
        return eot
    eos = tok.eos_token_id
    if not isinstance(eos, int):
        raise InputError("the tokenizer has neither <|endoftext|> nor an EOS token to separate documents")
    return eos


def pack(
    handle: ModelHandle, articles: Sequence[Article], ctx: int, max_windows: int | None = None
) -> Int[Tensor, "window pos"]:
    """Articles (each + separator) concatenated and cut into `ctx`-token windows; stops early at `max_windows`."""
    if ctx < 8:
        raise InputError(f"ctx must be ≥ 8, got {ctx}")
    sep, ids = separator_id(handle), []
    limit = None if max_windows is None else max_windows * ctx
    for start in range(0, len(articles), 256):
        batch = [a.text for a in articles[start : start + 256]]
        for row in handle.tokenizer(batch, add_special_tokens=False).input_ids:
            ids += [*row, sep]
        if limit is not None and len(ids) >= limit:
            break
    n = len(ids) // ctx if limit is None else min(len(ids) // ctx, max_windows or 0)
    if n == 0:
        raise InputError(f"the articles give fewer than {ctx} tokens: no full window")
    return torch.tensor(ids[: n * ctx], dtype=torch.long).view(n, ctx)


def render_conversation(handle: ModelHandle, messages: Sequence[dict[str, str]]) -> str:
    """A whole conversation (answer included) in the model's chat format; plain turns without one."""
    tok = handle.tokenizer
    if getattr(tok, "chat_template", None):
        return str(tok.apply_chat_template(list(messages), tokenize=False))
    return "\n\n".join(m["content"] for m in messages)


def chat_order(articles: Sequence[Article]) -> list[Article]:
    """The articles ordered by a hash of their title: a fixed order that mixes topics and letters."""
    return sorted(articles, key=lambda a: hashlib.sha256(a.title.encode("utf-8")).hexdigest())


def chat_windows(
    handle: ModelHandle, articles: Sequence[Article], ctx: int, max_windows: int | None = None
) -> Int[Tensor, "window pos"]:
    """One conversation per window, each starting at position 0 (module docstring); a conversation that the
    remaining articles cannot bring to `ctx` tokens is left out."""
    if ctx < 8:
        raise InputError(f"ctx must be ≥ 8, got {ctx}")
    arts = chat_order(articles)
    turns = [
        [{"role": "user", "content": CHAT_ASKS[j % len(CHAT_ASKS)].format(a.title)},
         {"role": "assistant", "content": a.text}]
        for j, a in enumerate(arts)
    ]  # fmt: skip
    rows: list[list[int]] = []
    for i in range(len(arts)):
        if max_windows is not None and len(rows) >= max_windows:
            break
        messages: list[dict[str, str]] = []
        for j in range(i, len(arts)):
            messages += turns[j]
            ids = handle.tokenizer(render_conversation(handle, messages), add_special_tokens=True).input_ids
            if len(ids) >= ctx:
                rows.append(ids[:ctx])
                break
    if not rows:
        raise InputError(f"the articles give no conversation of {ctx} tokens")
    return torch.tensor(rows, dtype=torch.long)


def split_windows(
    handle: ModelHandle,
    split: Split,
    ctx: int = DEFAULT_CTX,
    *,
    max_windows: int | None = None,
    corpus: Corpus = "wiki",
    render: Render = "plain",
) -> Int[Tensor, "window pos"]:
    """The windows of one split of the Wikipedia summaries (or of the shipped excerpt, split the same way),
    packed as plain text or as chat conversations (module docstring)."""
    if corpus not in CORPORA:
        raise InputError(f"corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
    if render not in RENDERS:
        raise InputError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
    articles = split_articles(split, wiki_articles() if corpus == "wiki" else excerpt_articles())
    if render == "chat":
        return chat_windows(handle, articles, ctx, max_windows)
    return pack(handle, articles, ctx, max_windows)


def capture(handle: ModelHandle, tokens: Int[Tensor, "batch pos"], names: Sequence[str]) -> dict[str, Tensor]:
    """The activations at `names` for `tokens`, stopping the forward pass after the deepest of them."""
    store: dict[str, Tensor] = {}

    def saver(name: str) -> Callable[..., Tensor]:
        def save(act: Tensor, hook: Any) -> Tensor:
            store[name] = act.detach()
            if len(store) == len(set(names)):
                raise _Enough
            return act

        return save

    with contextlib.suppress(_Enough):
        handle.run(tokens, fwd_hooks=[(n, saver(n)) for n in dict.fromkeys(names)])
    missing = sorted(set(names) - set(store))
    if missing:
        raise InputError(f"the forward pass never reached hook(s) {', '.join(missing)}")
    return store


def cache_folder(
    handle: ModelHandle, split: str, ctx: int, corpus: str = "wiki", render: str = "plain"
) -> Path:
    ident = handle.identity
    tag = f"{ident.name}-{(ident.sha256 or 'nohash')[:12]}".replace("/", "__")
    text = corpus if render == "plain" else f"{corpus}-{render}"
    return cache_root() / "activations" / tag / text / f"ctx{ctx}" / split


@dataclass
class ActivationStore:
    """fp16 activations of one split at several hooks (position 0 of each window excluded), memory-mapped."""

    folder: Path
    meta: dict[str, Any]

    @property
    def tokens(self) -> np.ndarray:
        return np.load(self.folder / "tokens.npy", mmap_mode="r", allow_pickle=False)

    def rows(self, hook: str) -> int:
        return int(self.meta["hooks"].get(hook, 0)) * (int(self.meta["ctx"]) - 1)

    def array(self, hook: str) -> np.ndarray:
        """[rows, d_model] fp16 for the windows collected so far."""
        n = self.rows(hook)
        if n == 0:
            raise InputError(f"no activations collected for {hook} in {self.folder}")
        return np.load(self.folder / _file(hook), mmap_mode="r", allow_pickle=False)[:n]


def _file(hook: str) -> str:
    return f"{hook}.npy"


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "meta.json")


def _open(handle: ModelHandle, split: Split, ctx: int, corpus: Corpus, render: Render) -> ActivationStore:
    folder = cache_folder(handle, split, ctx, corpus, render)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("sha256") == handle.identity.sha256 and int(meta["ctx"]) == ctx:
                return ActivationStore(folder, meta)
        except (json.JSONDecodeError, KeyError, ValueError, TypeError):
            pass  # a broken store is rebuilt
    folder.mkdir(parents=True, exist_ok=True)
    windows = split_windows(handle, split, ctx, corpus=corpus, render=render)
    np.save(folder / "tokens.npy", windows.numpy().astype(np.int32), allow_pickle=False)
    meta = {"model": handle.identity.name, "sha256": handle.identity.sha256, "split": split, "ctx": ctx, "corpus": corpus,
            "render": render, "n_windows": int(windows.shape[0]), "d_model": handle.facts.d_model, "hooks": {},
            "position_0": "excluded"}  # fmt: skip
    _write_meta(folder, meta)
    return ActivationStore(folder, meta)


def collect(
    handle: ModelHandle,
    sites: Sequence[Site],
    split: Split = "train",
    *,
    ctx: int = DEFAULT_CTX,
    max_tokens: int | None = None,
    batch_size: int = 8,
    corpus: Corpus = "wiki",
    render: Render = "plain",
    progress: Progress | None = None,
) -> ActivationStore:
    """Make sure the store holds at least `max_tokens` rows (all the split if None) for every site's hook."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if render not in RENDERS:
        raise InputError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
    store = _open(handle, split, ctx, corpus, render)
    total = int(store.meta["n_windows"])
    want = total if max_tokens is None else min(total, math.ceil(max_tokens / (ctx - 1)))
    names = [s.check(handle.facts.n_layers).hook for s in sites]
    start = min(int(store.meta["hooks"].get(n, 0)) for n in names)
    if start >= want:
        return store
    shape = (total * (ctx - 1), handle.facts.d_model)
    arrays = {n: _memmap(store.folder / _file(n), shape) for n in names}
    tokens = torch.from_numpy(np.array(store.tokens[:want])).long()
    tick = steps(progress, "collect windows")
    for step, lo in enumerate(range(start, want, batch_size), 1):
        hi = min(lo + batch_size, want)
        acts = capture(handle, tokens[lo:hi], names)
        for n in names:
            arrays[n][lo * (ctx - 1) : hi * (ctx - 1)] = acts[n][:, 1:].reshape(-1, shape[1]).cpu().numpy()
        if hi == want or step % 16 == 0:  # flush and record every few batches: a killed job resumes here
            for arr in arrays.values():
                arr.flush()
            store.meta["hooks"].update({n: max(hi, int(store.meta["hooks"].get(n, 0))) for n in names})
            _write_meta(store.folder, store.meta)
        tick(hi - start, want - start)
    return store


def _memmap(path: Path, shape: tuple[int, int]) -> np.memmap:
    if path.is_file():
        arr = np.load(path, mmap_mode="r+", allow_pickle=False)
        if tuple(arr.shape) == shape and arr.dtype == np.float16:
            return arr  # type: ignore[return-value]
    return open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
