"""What a researcher reads: the top features of each token of a text, a feature's page, reconstruction quality.

- `top_features`: the text's activations at the SAE's hook (the forward pass stops there), encoded by the SAE;
  per token the k most active features (active = > 0), and the explained variance over positions ≥ 1
  (1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²; position 0, the attention sink, excluded).
- `feature_page`: read from the precomputed dashboards (index.py): top contexts with the activating token,
  histogram, frequency, logit lens. Token ids become token strings here, with the model's tokenizer.
- `reconstruction`: evaluate.py's metrics on one text (CE with the SAE spliced in vs clean).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.features import index
from headscope.features.collect import capture
from headscope.features.evaluate import Reconstruction, evaluate
from headscope.features.saes import FeatureSAE
from headscope.models.handle import ModelHandle

MAX_K = 64


def explained_variance(x: Float[Tensor, "pos d_model"], x_hat: Float[Tensor, "pos d_model"]) -> float | None:
    """1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over the rows given (None when they do not vary)."""
    x, x_hat = x.double(), x_hat.double()
    total = (x - x.mean(0)).pow(2).sum()
    return None if total <= 0 else float(1.0 - (x - x_hat).pow(2).sum() / total)


def _pairs_out(keys: tuple[str, str], digits: int) -> Any:
    """(a, b) pairs → [{keys[0]: a, keys[1]: round(b)}] in JSON (what the app and the CLI read)."""
    return lambda pairs: [{keys[0]: a, keys[1]: round(b, digits)} for a, b in pairs]


def _pairs_in(keys: tuple[str, str]) -> Any:
    return lambda rows: tuple((r[keys[0]], float(r[keys[1]])) for r in rows)


_ACT = ("feature", "activation")
FIRES_ON_CONTEXTS = 5  # a feature reads as the tokens it fires on in this many of its top held-out contexts


@dataclass(frozen=True)
class FiresOn(JsonCodec):
    """What a feature fires on: the activating tokens of its top held-out contexts (from its dashboard), distinct,
    strongest context first — a reading of the feature without opening its page."""

    feature: int
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class TopFeatures(JsonCodec):
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    # per token: (feature, activation), most active first; JSON: [[{"feature", "activation"}, ...], ...]
    top: tuple[tuple[tuple[int, float], ...], ...] = jfield(
        encode=lambda top: [_pairs_out(_ACT, 5)(row) for row in top],
        decode=lambda rows: tuple(_pairs_in(_ACT)(row) for row in rows),
    )
    explained_variance: float | None = jfield(digits=5)
    fires_on: tuple[FiresOn, ...] = ()  # every listed feature's, where the SAE has dashboards


def activations(handle: ModelHandle, fsae: FeatureSAE, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(x, f): the activation at the SAE's hook and the SAE's codes, for one sequence [pos, ...]."""
    x = capture(handle, ids, [fsae.hook])[fsae.hook][0]
    with torch.inference_mode():
        return x, fsae.encode(x)


def top_features(handle: ModelHandle, fsae: FeatureSAE, text: str, k: int = 5) -> TopFeatures:
    k = checks.integer(k, "k", 1, min(MAX_K, fsae.d_sae))
    ids = handle.tokenize(text)
    x, f = activations(handle, fsae, ids)
    vals, idx = f.topk(k, dim=-1)
    rows = tuple(
        tuple((int(i), float(v)) for v, i in zip(vr.tolist(), ir.tolist(), strict=True) if v > 0)
        for vr, ir in zip(vals, idx, strict=True)
    )
    with torch.inference_mode():
        ev = explained_variance(x[1:], fsae.decode(f[1:]).to(x.dtype)) if x.shape[0] > 2 else None
    token_ids = tuple(int(t) for t in ids[0].tolist())
    listed = sorted({f for row in rows for f, _ in row})
    return TopFeatures(
        tuple(handle.str_tokens(token_ids)), token_ids, rows, ev, fires_on(handle, fsae, listed)
    )


def fires_on(
    handle: ModelHandle, fsae: FeatureSAE, features: list[int], n: int = FIRES_ON_CONTEXTS
) -> tuple[FiresOn, ...]:
    """Each feature's activating tokens in its top `n` held-out contexts (() when the SAE has no dashboards)."""
    if not has_dashboards(fsae):
        return ()
    d, _ = dashboards(fsae)
    out = []
    for f in features:
        ids: list[int] = []
        for w, p in zip(d["top_windows"][f, :n].tolist(), d["top_positions"][f, :n].tolist(), strict=True):
            if w < 0:
                break
            if (t := int(d["tokens"][w, p])) not in ids:
                ids.append(t)
        out.append(FiresOn(f, tuple(handle.str_tokens(ids))))
    return tuple(out)


def feature_activations(
    handle: ModelHandle, fsae: FeatureSAE, text: str, feature: int
) -> tuple[list[str], list[float]]:
    """One feature's activation on every token of a text (for highlighting a text by a feature)."""
    feature = fsae.check_feature(feature)
    ids = handle.tokenize(text)
    _, f = activations(handle, fsae, ids)
    return handle.str_tokens(ids), [round(float(v), 5) for v in f[:, feature].tolist()]


def reconstruction(handle: ModelHandle, fsae: FeatureSAE, text: str) -> Reconstruction:
    return evaluate(handle, [fsae], handle.tokenize(text))[0]


# -- feature pages, from the dashboards -------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _dashboards(path: str, mtime: float) -> tuple[dict[str, Tensor], dict[str, Any]]:
    try:
        with safe_open(path, framework="pt") as fh:
            header = json.loads((fh.metadata() or {}).get("headscope", "{}"))
        return load_file(path), header
    except Exception:
        raise InputError(
            f"the dashboards file {path} is corrupted; rebuild it with `headscope features index`"
        ) from None


def dashboards(fsae: FeatureSAE) -> tuple[dict[str, Tensor], dict[str, Any]]:
    path = None if fsae.folder is None else fsae.folder / index.FILE
    if path is None or not path.is_file():
        raise InputError(
            f"SAE {fsae.name} has no dashboards yet: run `headscope features index --sae {fsae.name}`"
        )
    return _dashboards(str(path), path.stat().st_mtime)


def has_dashboards(fsae: FeatureSAE) -> bool:
    return fsae.folder is not None and Path(fsae.folder / index.FILE).is_file()


@dataclass(frozen=True)
class Context(JsonCodec):
    tokens: tuple[str, ...]
    activations: tuple[float, ...] = jfield(digits=4)
    focus: int = jfield()  # index of the activating token in `tokens`
    activation: float = jfield(digits=4)


_LOGIT = ("token", "logit")


def _histogram_out(h: tuple[tuple[float, ...], tuple[int, ...]]) -> dict[str, Any]:
    return {"edges": [round(e, 4) for e in h[0]], "counts": list(h[1])}


def _histogram_in(d: dict[str, Any]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    return tuple(float(e) for e in d["edges"]), tuple(int(c) for c in d["counts"])


@dataclass(frozen=True)
class FeaturePage(JsonCodec):
    sae: str
    hook: str
    feature: int
    frequency: float = jfield(digits=6)
    max_activation: float = jfield(digits=4)
    contexts: tuple[Context, ...] = jfield()
    # (bin edges, counts); JSON {"edges", "counts"}
    histogram: tuple[tuple[float, ...], tuple[int, ...]] = jfield(encode=_histogram_out, decode=_histogram_in)
    promoted: tuple[tuple[str, float], ...] = jfield(encode=_pairs_out(_LOGIT, 4), decode=_pairs_in(_LOGIT))
    suppressed: tuple[tuple[str, float], ...] = jfield(encode=_pairs_out(_LOGIT, 4), decode=_pairs_in(_LOGIT))
    indexed_positions: int = jfield()


def _contexts(handle: ModelHandle, d: dict[str, Tensor], i: int, before: int) -> tuple[Context, ...]:
    tokens, out = d["tokens"], []
    for slot, (w, p) in enumerate(
        zip(d["top_windows"][i].tolist(), d["top_positions"][i].tolist(), strict=True)
    ):
        if w < 0:
            break
        lo = max(p - before, 0)
        width = d["context_acts"].shape[-1]
        ids = tokens[w, lo : p - before + width].tolist()
        acts = d["context_acts"][i, slot, lo - (p - before) : lo - (p - before) + len(ids)].float().tolist()
        out.append(
            Context(tuple(handle.str_tokens(ids)), tuple(acts), p - lo, float(d["top_values"][i, slot]))
        )
    return tuple(out)


def feature_page(handle: ModelHandle, fsae: FeatureSAE, feature: int) -> FeaturePage:
    i = fsae.check_feature(feature)
    d, header = dashboards(fsae)
    cfg = header.get("config", {})
    bins = d["hist_counts"].shape[1]
    top = float(d["max_act"][i])
    edges = tuple(top * b / bins for b in range(bins + 1))

    def lens(ids: str, vals: str) -> tuple[tuple[str, float], ...]:
        toks = handle.str_tokens(d[ids][i].tolist())
        return tuple((t, float(v)) for t, v in zip(toks, d[vals][i].float().tolist(), strict=True))

    return FeaturePage(
        fsae.name, fsae.hook, i, float(d["frequency"][i]), top, _contexts(handle, d, i, int(cfg.get("before", 0))),
        (edges, tuple(int(c) for c in d["hist_counts"][i].tolist())), lens("lens_pos_ids", "lens_pos_vals"),
        lens("lens_neg_ids", "lens_neg_vals"), int(header.get("positions", 0)),
    )  # fmt: skip
