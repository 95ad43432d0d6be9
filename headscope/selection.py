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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from headscope import checks
from headscope.codec import JsonCodec
from headscope.errors import InputError

if TYPE_CHECKING:
    from headscope.models import ModelHandle

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


# ---- the app's selection: heads of one model (and token positions), as a session file carries it ---------------
MAX_POSITIONS = 64


@dataclass(frozen=True)
class Selection(JsonCodec):
    """Heads of one model shape (canonical text; "" for none, then no shape or model) and token positions
    (sorted, unique). Checked when made: a forged value from a session file or an API caller is refused.
    JSON: `{"heads": "9.4, 12.1", "n_layers": 30, "n_heads": 9, "model": "smollm2-135m", "positions": [3, 7]}`.
    The functions below return a new one (they also accept the JSON form)."""

    heads: str = ""
    n_layers: int | None = None
    n_heads: int | None = None
    model: str | None = None
    positions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.heads:
            n_l = checks.integer(self.n_layers, "selection n_layers", 1, 10_000)
            n_h = checks.integer(self.n_heads, "selection n_heads", 1, 10_000)
            hs = HeadSet.parse(str(self.heads), n_l, n_h)
            model = str(self.model) if self.model else None
            for name, value in (("heads", str(hs)), ("n_layers", n_l), ("n_heads", n_h), ("model", model)):
                set_(self, name, value)
        else:
            for name, value in (("heads", ""), ("n_layers", None), ("n_heads", None), ("model", None)):
                set_(self, name, value)
        positions = self.positions
        if not isinstance(positions, list | tuple) or len(positions) > MAX_POSITIONS:
            raise InputError(f"selection positions: a list of at most {MAX_POSITIONS} token positions")
        chosen = {checks.integer(p, "token position", 0, 1_000_000) for p in positions}
        set_(self, "positions", tuple(sorted(chosen)))


def clean(sel: Any) -> Selection:
    """A selection value from anywhere (state, session file JSON, API caller) as a checked `Selection`."""
    if isinstance(sel, Selection):
        return sel
    if not isinstance(sel, dict):
        return Selection()
    return Selection(
        sel.get("heads") or "",
        sel.get("n_layers"),
        sel.get("n_heads"),
        sel.get("model"),
        sel.get("positions") or (),
    )


def heads_of(sel: Any) -> HeadSet | None:
    """The selected heads in the selection's own shape (None when nothing is selected)."""
    sel = clean(sel)
    if not sel.heads or sel.n_layers is None or sel.n_heads is None:
        return None
    return HeadSet.parse(sel.heads, sel.n_layers, sel.n_heads)


def _same_shape(sel: Any, n_layers: int, n_heads: int, using: str | None = None) -> HeadSet:
    """The selected heads, refused unless they are of an `n_layers`×`n_heads` model (`using`: the model's name
    when the heads are about to run on it)."""
    hs = heads_of(sel)
    if hs is None:
        return HeadSet.empty(n_layers, n_heads)
    if (hs.n_layers, hs.n_heads) != (n_layers, n_heads):
        raise InputError(
            f"the selection ({hs}) was made on a {hs.n_layers}×{hs.n_heads} model; "
            f"{using} is {n_layers}×{n_heads}: clear the selection first"
            if using
            else f"the selection holds heads of a {hs.n_layers}×{hs.n_heads} model ({clean(sel).model}); "
            f"clear it before selecting heads of a {n_layers}×{n_heads} one"
        )
    return hs


def head_set(sel: Any, handle: ModelHandle) -> HeadSet:
    """The selected heads checked against `handle`'s shape (an empty set when nothing is selected)."""
    return _same_shape(sel, handle.facts.n_layers, handle.facts.n_heads, handle.identity.name)


def with_heads(sel: Any, hs: HeadSet, model: str | None) -> Selection:
    """The selection with its heads replaced by `hs` (positions kept)."""
    out = clean(sel)
    if not hs:
        return replace(out, heads="")
    return replace(out, heads=str(hs), n_layers=hs.n_layers, n_heads=hs.n_heads, model=model)


def add(sel: Any, heads: HeadSet, model: str | None) -> Selection:
    """The union of the selection and `heads`."""
    return with_heads(sel, _same_shape(sel, heads.n_layers, heads.n_heads).union(heads), model)


def toggle(sel: Any, layer: Any, head: Any, n_layers: Any, n_heads: Any, model: str | None) -> Selection:
    """A click on a grid cell: the head added, or removed if it was selected."""
    n_l = checks.integer(n_layers, "n_layers", 1, 10_000)
    n_h = checks.integer(n_heads, "n_heads", 1, 10_000)
    cell = (checks.integer(layer, "layer", 0, n_l - 1), checks.integer(head, "head", 0, n_h - 1))
    return with_heads(sel, _same_shape(sel, n_l, n_h).toggle(cell), model)


def box(sel: Any, layers: Any, heads: Any, n_layers: Any, n_heads: Any, model: str | None) -> Selection:
    """A drag over a grid: every head of the rectangle added."""
    n_l = checks.integer(n_layers, "n_layers", 1, 10_000)
    n_h = checks.integer(n_heads, "n_heads", 1, 10_000)
    l0, l1 = sorted(checks.integer(v, "layer", 0, n_l - 1) for v in (layers or [None, None])[:2])
    h0, h1 = sorted(checks.integer(v, "head", 0, n_h - 1) for v in (heads or [None, None])[:2])
    cells = [(a, b) for a in range(l0, l1 + 1) for b in range(h0, h1 + 1)]
    return add(sel, HeadSet.of(cells, n_l, n_h), model)


def from_text(sel: Any, text: Any, handle: ModelHandle) -> Selection:
    """What a visitor typed in the bar ("9.4, 12.*", "*.3"), checked against the model: replaces the heads."""
    if not isinstance(text, str) or len(text) > 4000:
        raise InputError("selected heads: text like '9.4, 12.*, *.3' (at most 4000 characters)")
    return with_heads(sel, handle.head_set(text), handle.identity.name)


def _positions(sel: Any, chosen: set[int]) -> Selection:
    if len(chosen) > MAX_POSITIONS:
        raise InputError(f"at most {MAX_POSITIONS} token positions can be selected")
    return replace(clean(sel), positions=tuple(chosen))


def toggle_position(sel: Any, position: Any) -> Selection:
    pos = checks.integer(position, "token position", 0, 1_000_000)
    return _positions(sel, set(clean(sel).positions) ^ {pos})


def positions_from_text(sel: Any, text: Any) -> Selection:
    """'3, 7, 10-12' → positions 3, 7, 10, 11, 12."""
    if not isinstance(text, str) or len(text) > 1000:
        raise InputError("selected positions: text like '3, 7, 10-12'")
    chosen: set[int] = set()
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        a = checks.integer(lo.strip(), "token position", 0, 1_000_000)
        b = checks.integer(hi.strip(), "token position", 0, 1_000_000) if hi else a
        chosen.update(range(min(a, b), max(a, b) + 1))
        if len(chosen) > MAX_POSITIONS:  # refused at the first part past the limit
            return _positions(sel, chosen)
    return _positions(sel, chosen)


def describe(sel: Any) -> str:
    """The bar's text: the canonical head list."""
    return clean(sel).heads


def describe_positions(sel: Any) -> str:
    return ", ".join(str(p) for p in clean(sel).positions)


def names(sel: Any) -> list[str]:
    """Each selected head as "L.H" (for views that highlight the selection)."""
    hs = heads_of(sel)
    return hs.names() if hs is not None else []


def as_head_set(value: Any, handle: ModelHandle) -> HeadSet:
    """What an "add" source returns (a HeadSet, grammar text, or (layer, head) pairs) as a HeadSet of `handle`."""
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    if isinstance(value, HeadSet):
        if (value.n_layers, value.n_heads) != (n_l, n_h):
            raise InputError(
                f"heads of a {value.n_layers}×{value.n_heads} model; {handle.identity.name} is {n_l}×{n_h}"
            )
        return value
    if isinstance(value, str):
        return handle.head_set(value)
    return HeadSet.of(value, n_l, n_h)
