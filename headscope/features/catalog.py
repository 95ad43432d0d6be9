"""Which SAEs exist for a model, by name: the shipped ones (package data, `assets/saes/<model>/<name>/`) and the
user's (`$HEADSCOPE_CACHE/saes/<model>/<name>/`, where `features train --out` may also write), plus a released
SAE from the local Hugging Face cache (`pretrained:RELEASE:SAE_ID`). The app offers names only, never paths.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headscope import assets
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.features.folder import CARD, CFG, WEIGHTS
from headscope.features.folder import DASHBOARDS as DASHBOARDS  # the folder's file names, for callers
from headscope.files import read_json
from headscope.models.loading import cache_root

if TYPE_CHECKING:
    from headscope.features.saes import FeatureSAE
    from headscope.models.handle import ModelHandle
PRETRAINED = "pretrained:"
_CACHE: dict[tuple[int, str, float], FeatureSAE] = {}
_CACHE_MAX = 8
_LOCK = threading.Lock()


@dataclass(frozen=True)
class SAEEntry(JsonCodec):
    """One SAE of the catalog, as `features list` and `models --json` show it: where it reads and its card's
    figures (the Wikipedia test split's, and the chat set's explained variance; None where the card lacks one)."""

    name: str
    model: str
    shipped: bool
    hook: str | None
    kind: str | None
    layer: int | None
    d_sae: int | None
    architecture: str | None
    has_dashboards: bool
    tokens_seen: int | None = None
    training_seconds: float | None = None
    explained_variance: float | None = None
    explained_variance_chat: float | None = None
    l0: float | None = None
    dead_fraction: float | None = None
    ce_loss_score: float | None = None
    ce_increase: float | None = None
    kl_div: float | None = None
    eval_tokens: int | None = None
    folder: Path = jfield(skip=True, default=Path(), compare=False)
    card: dict[str, Any] = jfield(skip=True, default_factory=dict, compare=False)


def card_figures(card: dict[str, Any]) -> dict[str, Any]:
    """The figures a catalog row shows (from its card): the Wikipedia test split's (a format-1 card's "eval"),
    and the explained variance on the chat held-out set where the card has it."""
    held = card.get("heldout") or {}
    ev = held.get("wiki-test") or card.get("eval") or {}
    keys = ("explained_variance", "l0", "dead_fraction", "ce_loss_score", "ce_increase", "kl_div", "tokens")
    return {"tokens_seen": card.get("tokens_seen"), "training_seconds": card.get("training_seconds"),
            **{("eval_tokens" if k == "tokens" else k): ev.get(k) for k in keys},
            "explained_variance_chat": (held.get("chat") or {}).get("explained_variance")}  # fmt: skip


def shipped_root() -> Path:
    return assets.path("saes")


def user_root() -> Path:
    return cache_root() / "saes"


def _entry(folder: Path, model: str, shipped: bool) -> SAEEntry | None:
    try:
        cfg = read_json(folder / CFG, "SAE config")
        card = read_json(folder / CARD, "SAE card") if (folder / CARD).is_file() else {}
    except InputError:
        return None  # a broken folder is not listed; loading it by path gives the reason
    hook = card.get("hook") or (cfg.get("metadata") or {}).get("hook_name")
    return SAEEntry(card.get("name") or folder.name, model, shipped, hook, card.get("kind"), card.get("layer"),
                    cfg.get("d_sae"), cfg.get("architecture"), (folder / DASHBOARDS).is_file(),
                    **card_figures(card), folder=folder, card=card)  # fmt: skip


def available(model: str | None = None) -> list[SAEEntry]:
    """SAEs for `model` (all models when None): shipped first, then the user's; sorted by name."""
    out: list[SAEEntry] = []
    for root, shipped in ((shipped_root(), True), (user_root(), False)):
        if not root.is_dir():
            continue
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            if model is not None and model_dir.name != model:
                continue
            for folder in sorted(p for p in model_dir.iterdir() if (p / CFG).is_file()):
                entry = _entry(folder, model_dir.name, shipped)
                if entry is not None and all(e.name != entry.name for e in out if e.model == entry.model):
                    out.append(entry)
    return out


def find(model: str, name: str) -> SAEEntry:
    entries = available(model)
    for e in entries:
        if e.name == name:
            return e
    known = ", ".join(e.name for e in entries) or "none"
    raise InputError(f"no SAE named {name!r} for model {model} (available: {known})")


def resolve(handle: ModelHandle, name: str, *, allow_path: bool = False) -> FeatureSAE:
    """An SAE by catalog name (or `pretrained:RELEASE:SAE_ID`; or a folder path when `allow_path`, CLI only),
    bound to `handle` (a value with a path separator is a folder). Loaded SAEs are kept (per handle and file version), so views reuse them."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("no SAE given")
    from headscope.features import saes

    if name.startswith(PRETRAINED):
        release, _, sae_id = name.removeprefix(PRETRAINED).partition(":")
        return saes.from_pretrained(handle, release, sae_id)
    if allow_path and is_path(name):
        if not Path(name).is_dir():
            raise InputError(f"SAE folder not found: {name}")
        return _cached(handle, Path(name), None)
    entry = find(handle.identity.name, name)
    return _cached(handle, entry.folder, entry.name)


def is_path(name: str) -> bool:
    """A folder path rather than a catalog name (CLI only): it contains a path separator (use ./name for a
    folder in the current directory)."""
    return "/" in name or "\\" in name


def _cached(handle: ModelHandle, folder: Path, name: str | None) -> FeatureSAE:
    from headscope.features import saes

    weights = folder / WEIGHTS
    key = (
        id(handle),
        f"{handle.identity.name}:{folder.resolve()}",
        weights.stat().st_mtime if weights.is_file() else 0.0,
    )
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    fsae = saes.load(handle, folder, name)
    with _LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = fsae
    return fsae
