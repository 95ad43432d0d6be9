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


@dataclass(frozen=True)
class TopFeatures:
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    top: tuple[tuple[tuple[int, float], ...], ...]  # per token: (feature, activation), most active first
    explained_variance: float | None

    def to_json(self) -> dict[str, Any]:
        ev = self.explained_variance
        return {
            "tokens": list(self.tokens),
            "token_ids": list(self.token_ids),
            "top": [[{"feature": f, "activation": round(a, 5)} for f, a in row] for row in self.top],
            "explained_variance": None if ev is None else round(ev, 5),
        }


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
    return TopFeatures(tuple(handle.str_tokens(token_ids)), token_ids, rows, ev)


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
class Context:
    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    focus: int  # index of the activating token in `tokens`
    activation: float

    def to_json(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "activations": [round(a, 4) for a in self.activations],
                "focus": self.focus, "activation": round(self.activation, 4)}  # fmt: skip


@dataclass(frozen=True)
class FeaturePage:
    sae: str
    hook: str
    feature: int
    frequency: float
    max_activation: float
    contexts: tuple[Context, ...]
    histogram: tuple[tuple[float, ...], tuple[int, ...]]  # (bin edges, counts)
    promoted: tuple[tuple[str, float], ...]
    suppressed: tuple[tuple[str, float], ...]
    indexed_positions: int

    def to_json(self) -> dict[str, Any]:
        edges, counts = self.histogram
        return {
            "sae": self.sae, "hook": self.hook, "feature": self.feature, "frequency": round(self.frequency, 6),
            "max_activation": round(self.max_activation, 4), "contexts": [c.to_json() for c in self.contexts],
            "histogram": {"edges": [round(e, 4) for e in edges], "counts": list(counts)},
            "promoted": [{"token": t, "logit": round(v, 4)} for t, v in self.promoted],
            "suppressed": [{"token": t, "logit": round(v, 4)} for t, v in self.suppressed],
            "indexed_positions": self.indexed_positions,
        }  # fmt: skip


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
