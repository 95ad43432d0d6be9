"""`HeadSet`: a set of attention heads, written one way everywhere — CLI `--heads`, the app's selection bar,
circuit reports, steering-vector sidecars, session files.

Grammar (comma-separated items, whitespace ignored):
- `L.H`  one head (layer L, head H), e.g. `9.4`;
- `L.*`  every head of layer L;
- `*.H`  head H of every layer;
- `*.*`  every head.
Parsing needs no model; `resolve(n_layers, n_heads)` expands the wildcards and checks every index against the
model's shape. The canonical text (`str(heads)`) lists single heads sorted by (layer, head) and folds a full
layer into `L.*`, so two spellings of one set serialise identically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from headscope import checks
from headscope.codec import JsonCodec
from headscope.errors import InputError

Head = tuple[int, int]  # (layer, head)
MAX_ITEMS = 4096
_ITEM = re.compile(r"^(\d+|\*)\.(\d+|\*)$")
_LEGACY = re.compile(r"^\d+$")


@dataclass(frozen=True)
class HeadPattern:
    """One parsed item: a layer (or None for `*`) and a head (or None for `*`)."""

    layer: int | None
    head: int | None

    def __str__(self) -> str:
        return f"{'*' if self.layer is None else self.layer}.{'*' if self.head is None else self.head}"


def pattern_text(heads: object) -> str | None:
    """The model-free, canonical text of a head selection, what configs store: its patterns ("9.4, 12.*, *.3"),
    syntax checked; indices are checked against a model when a `HeadSet` is made from it. Accepts text, a
    `HeadSet` or (layer, head) pairs; None stays None (every head, by the config's convention)."""
    if heads is None:
        return None
    if isinstance(heads, HeadSet):
        text = str(heads)
    elif isinstance(heads, str):
        text = heads
    elif isinstance(heads, Iterable):
        text = ", ".join(_pair_text(p) for p in heads)
    else:
        raise InputError(f"heads must be text like '9.4, 12.*' or (layer, head) pairs, got {heads!r}")
    return ", ".join(str(p) for p in parse_patterns(text))


def _pair_text(pair: object) -> str:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        hint = f" (head {pair} of every layer is '*.{pair}')" if isinstance(pair, int) else ""
        raise InputError(f"heads: {pair!r} is not a (layer, head) pair{hint}")
    layer, head = (checks.integer(x, "heads index", 0) for x in pair)
    return f"{layer}.{head}"


def parse_patterns(text: str) -> tuple[HeadPattern, ...]:
    """The items of a head-set string, unexpanded. Empty text → ()."""
    if not isinstance(text, str):
        raise InputError(f"heads must be text like '9.4, 12.*', got {type(text).__name__}")
    items = [s.strip() for s in text.replace(";", ",").split(",") if s.strip()]
    if len(items) > MAX_ITEMS:
        raise InputError(f"heads lists {len(items)} items; at most {MAX_ITEMS}")
    out = []
    for item in items:
        m = _ITEM.match(item.replace(" ", ""))
        if m is None:
            hint = (
                f" (a bare head index now reads '*.{item}': head {item} of every layer)"
                if _LEGACY.match(item)
                else ""
            )
            raise InputError(f"heads: {item!r} is not L.H, L.* or *.H{hint}")
        layer, head = (None if g == "*" else int(g) for g in m.groups())
        out.append(HeadPattern(layer, head))
    return tuple(out)


@dataclass(frozen=True)
class HeadSet(JsonCodec):
    """A resolved, validated set of heads of one model shape (sorted, no duplicates). JSON: the (layer, head)
    pairs and the shape, plus the canonical `text` ("9.*, 12.1") and the `count` (derived, not read)."""

    heads: tuple[Head, ...]
    n_layers: int
    n_heads: int

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, n_layers: int, n_heads: int) -> HeadSet:
        """Parse and resolve against a model shape; every index is checked."""
        return cls.from_patterns(parse_patterns(text), n_layers, n_heads)

    @classmethod
    def from_patterns(cls, patterns: Iterable[HeadPattern], n_layers: int, n_heads: int) -> HeadSet:
        _check_shape(n_layers, n_heads)
        found: set[Head] = set()
        for p in patterns:
            if p.layer is not None and not 0 <= p.layer < n_layers:
                raise InputError(
                    f"heads: layer {p.layer} in {str(p)!r} is out of range (the model has layers 0..{n_layers - 1})"
                )
            if p.head is not None and not 0 <= p.head < n_heads:
                raise InputError(
                    f"heads: head {p.head} in {str(p)!r} is out of range (the model has heads 0..{n_heads - 1})"
                )
            layers = range(n_layers) if p.layer is None else (p.layer,)
            heads = range(n_heads) if p.head is None else (p.head,)
            found.update((layer, head) for layer in layers for head in heads)
        return cls(tuple(sorted(found)), n_layers, n_heads)

    @classmethod
    def of(cls, heads: Iterable[Head], n_layers: int, n_heads: int) -> HeadSet:
        """From (layer, head) pairs, checked against the shape."""
        return cls.from_patterns(
            (HeadPattern(int(layer), int(head)) for layer, head in heads), n_layers, n_heads
        )

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> HeadSet:
        m = np.asarray(mask, dtype=bool)
        if m.ndim != 2:
            raise InputError(f"a head mask must be [layer, head], got shape {m.shape}")
        return cls(tuple((int(a), int(b)) for a, b in zip(*np.nonzero(m), strict=True)), *m.shape)

    @classmethod
    def empty(cls, n_layers: int, n_heads: int) -> HeadSet:
        _check_shape(n_layers, n_heads)
        return cls((), n_layers, n_heads)

    # -- reading ---------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Head]:
        return iter(self.heads)

    def __len__(self) -> int:
        return len(self.heads)

    def __bool__(self) -> bool:
        return bool(self.heads)

    def __contains__(self, item: object) -> bool:
        return item in set(self.heads)

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({layer for layer, _ in self.heads}))

    def by_layer(self) -> dict[int, tuple[int, ...]]:
        """layer → the selected heads of that layer (layers with none are absent)."""
        out: dict[int, list[int]] = {}
        for layer, head in self.heads:
            out.setdefault(layer, []).append(head)
        return {layer: tuple(h) for layer, h in out.items()}

    def mask(self) -> np.ndarray:
        """[layer, head] booleans."""
        m = np.zeros((self.n_layers, self.n_heads), dtype=bool)
        for layer, head in self.heads:
            m[layer, head] = True
        return m

    def names(self) -> list[str]:
        """Each head as "L.H"."""
        return [f"{layer}.{head}" for layer, head in self.heads]

    # -- set algebra -----------------------------------------------------------------------------------------
    def _same_shape(self, other: HeadSet) -> None:
        if (self.n_layers, self.n_heads) != (other.n_layers, other.n_heads):
            raise InputError(
                f"head sets of different models ({self.n_layers}×{self.n_heads} vs {other.n_layers}×{other.n_heads})"
            )

    def union(self, other: HeadSet) -> HeadSet:
        self._same_shape(other)
        return HeadSet(tuple(sorted(set(self.heads) | set(other.heads))), self.n_layers, self.n_heads)

    def difference(self, other: HeadSet) -> HeadSet:
        self._same_shape(other)
        return HeadSet(tuple(sorted(set(self.heads) - set(other.heads))), self.n_layers, self.n_heads)

    def toggle(self, head: Head) -> HeadSet:
        """With `head` added, or removed if it was there (a click on a heatmap cell)."""
        one = HeadSet.of([head], self.n_layers, self.n_heads)
        return self.difference(one) if head in self else self.union(one)

    def complement(self) -> HeadSet:
        return HeadSet.from_mask(~self.mask())

    # -- text ------------------------------------------------------------------------------------------------
    def __str__(self) -> str:
        """Canonical text: full layers as `L.*`, the rest as `L.H`, in layer order."""
        parts = []
        for layer, heads in self.by_layer().items():
            parts += [f"{layer}.*"] if len(heads) == self.n_heads else [f"{layer}.{h}" for h in heads]
        return ", ".join(parts)

    json_extra = ("text", "count")

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> HeadSet:
        """Read through the codec, then every pair checked against the shape (as `of` checks them)."""
        raw = super().from_json(data, where)
        return cls.of(raw.heads, raw.n_layers, raw.n_heads)

    @property
    def text(self) -> str:
        return str(self)

    @property
    def count(self) -> int:
        return len(self)


def _check_shape(n_layers: int, n_heads: int) -> None:
    if not (isinstance(n_layers, int) and isinstance(n_heads, int) and n_layers >= 1 and n_heads >= 1):
        raise InputError(f"a model shape needs ≥ 1 layer and ≥ 1 head, got {n_layers}×{n_heads}")
