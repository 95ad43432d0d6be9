"""`headscope features ...`: SAEs in SAELens format — list, top, page, recon, steer, attribute, train, index.

`--sae` takes a catalog name (`features list`), `pretrained:RELEASE:SAE_ID` (local Hugging Face cache only) or,
here on the command line only, an SAE folder path. Values are checked before a model is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from headscope.cli.common import emit, model_args, progress_bar, text_or_file, writable_dir
from headscope.errors import InputError


def _model_name(args: argparse.Namespace) -> str:
    from headscope.models import resolve

    return resolve(args.model).name


def _check_sae(args: argparse.Namespace) -> None:
    """Refuse an unknown SAE name or a missing folder before loading a model (their files are checked at load)."""
    from headscope.features import catalog

    if args.sae.startswith(catalog.PRETRAINED):
        return
    if catalog.is_path(args.sae):
        if not Path(args.sae).is_dir():
            raise InputError(f"SAE folder not found: {args.sae}")
        return
    catalog.find(_model_name(args), args.sae)


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from headscope.features import catalog
    from headscope.models import ModelHandle

    handle = ModelHandle.load(args.model, device=args.device)
    return handle, catalog.resolve(handle, args.sae, allow_path=True)


def _text(args: argparse.Namespace) -> str:
    text = text_or_file(args)
    if text is None or not text.strip():
        raise InputError("give --text or --file")
    return text


def cmd_list(args: argparse.Namespace) -> None:
    from headscope.features import catalog

    rows = [e.to_json() for e in catalog.available(_model_name(args))]

    def text(p: dict) -> str:
        lines = [f"{'name':28} {'hook':28} {'d_sae':>6} {'EV':>6} {'CE score':>8} {'L0':>6}"]
        for r in p["saes"]:
            lines.append(f"{r['name']:28} {r['hook']:28} {r['d_sae']!s:>6} {r['explained_variance']!s:>6} "
                         f"{r['ce_loss_score']!s:>8} {r['l0']!s:>6}")  # fmt: skip
        return "\n".join(lines)

    emit({"model": _model_name(args), "saes": rows}, args.json, text)


def cmd_top(args: argparse.Namespace) -> None:
    from headscope.features.views import MAX_K, top_features

    text = _text(args)
    if not 1 <= args.k <= MAX_K:
        raise InputError(f"--k must be in [1, {MAX_K}], got {args.k}")
    _check_sae(args)
    handle, fsae = _load(args)
    result = top_features(handle, fsae, text, args.k)

    def lines(p: dict) -> str:
        rows = [f"{tok!r:>16}  " + "  ".join(f"#{t['feature']}={t['activation']:.2f}" for t in top)
                for tok, top in zip(p["tokens"], p["top"], strict=True)]  # fmt: skip
        return "\n".join([*rows, f"explained variance (positions ≥ 1): {p['explained_variance']}"])

    emit(result.to_json(), args.json, lines)


def cmd_page(args: argparse.Namespace) -> None:
    from headscope.features.views import feature_page

    _check_feature_arg(args.feature)
    _check_sae(args)
    handle, fsae = _load(args)
    emit(feature_page(handle, fsae, args.feature).to_json(), args.json, _plain)


def cmd_recon(args: argparse.Namespace) -> None:
    from headscope.features.views import reconstruction

    text = _text(args)
    _check_sae(args)
    handle, fsae = _load(args)
    emit({"sae": fsae.name, **reconstruction(handle, fsae, text).to_json()}, args.json, _plain)


def cmd_steer(args: argparse.Namespace) -> None:
    from headscope.cli.steering import contrast_inputs, eval_options
    from headscope.features.steer import FeatureSteerConfig, steer, vector_file
    from headscope.steering import vectors
    from headscope.steering.direction import DEFAULT_ALPHA

    if args.alpha is None and args.mode == "clamp":
        raise InputError("--mode clamp needs --alpha (the value to clamp the feature's activation to)")
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    cfg = FeatureSteerConfig(args.feature, alpha, args.mode, args.position)  # refuses NaN before loading
    inputs = contrast_inputs(eval_options(args))  # prompts, held-out texts, instruction: before any loading
    if args.out and cfg.mode != "add":
        raise InputError("--out saves a steering vector: mode 'add' only (a clamp depends on the activation)")
    out = writable_dir(args.out) if args.out else None
    _check_sae(args)
    handle, fsae = _load(args)
    fsae.check_feature(args.feature)
    result = steer(handle, fsae, inputs.prompts, cfg, sbs=inputs.sbs, texts=inputs.texts)
    payload = result.to_json()
    if out is not None and result.steering_vector is not None:
        payload["vectors"] = str(vectors.save(out, *vector_file(handle, result.steering_vector, cfg)))
    emit(payload, args.json, _plain)


def cmd_attribute(args: argparse.Namespace) -> None:
    from headscope.features import attribution

    if not args.prompt.strip():
        raise InputError("--prompt is empty")
    if not 1 <= args.top <= attribution.MAX_TOP:
        raise InputError(f"--top must be in [1, {attribution.MAX_TOP}], got {args.top}")
    _check_sae(args)
    handle, fsae = _load(args)
    metric = attribution.metric_for(handle, args.target, args.contrast)
    result = attribution.attribute(handle, fsae, args.prompt, metric, args.top)
    payload = result.to_json()
    if args.check:
        payload["check"] = attribution.check(handle, fsae, args.prompt, metric, result, args.top).to_json()
    emit(payload, args.json, _plain)


def cmd_train(args: argparse.Namespace) -> None:
    from headscope.features import catalog
    from headscope.features.train import TrainConfig, train
    from headscope.models import ModelHandle

    cfg = TrainConfig(args.hook, args.layer, args.latents, args.architecture, args.topk, args.tokens,
                      args.batch_size, args.lr, args.l1, args.seed, eval_tokens=args.eval_tokens)  # fmt: skip
    name = args.name or f"{args.hook}-{args.layer}-{args.architecture}-{args.latents}"
    out = writable_dir(args.out or catalog.user_root() / _model_name(args) / name)
    handle = ModelHandle.load(args.model, device=args.device)
    cfg.site.check(handle.facts.n_layers)
    with progress_bar("train SAE") as progress:
        result = train(handle, cfg, out, name=name, progress=progress)
    emit(result.to_json(), args.json, _plain)


def cmd_index(args: argparse.Namespace) -> None:
    from headscope.features.index import IndexConfig, build

    cfg = IndexConfig(tokens=args.tokens, contexts=args.contexts)
    _check_sae(args)
    handle, fsae = _load(args)
    with progress_bar("index") as progress:
        header = build(handle, fsae, cfg, progress=progress)
    emit(header, args.json, _plain)


def _check_feature_arg(feature: int) -> None:
    if feature < 0:
        raise InputError(f"--feature must be ≥ 0, got {feature}")


def _plain(payload: Any, indent: str = "") -> str:
    lines = []
    for k, v in payload.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:\n{_plain(v, indent + '  ')}")
        else:
            lines.append(f"{indent}{k}: {v}")
    return "\n".join(lines)


def _sae_args(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument(
        "--sae",
        required=True,
        help="SAE name (features list), pretrained:RELEASE:ID, or a folder path (./name for one here)",
    )


def _text_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text")
    src.add_argument("--file", help="a UTF-8 text file")


def register(sub: Any) -> None:
    from headscope.cli.steering import evaluation_args

    feats = sub.add_parser(
        "features", help="SAE features (SAELens format): list, top, page, steer, train, index"
    )
    fs = feats.add_subparsers(dest="features_command", required=True)

    p = fs.add_parser("list", help="the SAEs available for a model, with their card figures")
    model_args(p)
    p.set_defaults(func=cmd_list)

    p = fs.add_parser("top", help="the top-k active features of every token of a text")
    _sae_args(p)
    _text_args(p)
    p.add_argument("--k", type=int, default=5)
    p.set_defaults(func=cmd_top)

    p = fs.add_parser("page", help="a feature's page: top contexts, histogram, logit lens (needs `index`)")
    _sae_args(p)
    p.add_argument("--feature", type=int, required=True)
    p.set_defaults(func=cmd_page)

    p = fs.add_parser("recon", help="reconstruction quality on a text: explained variance, CE with the SAE")
    _sae_args(p)
    _text_args(p)
    p.set_defaults(func=cmd_recon)

    p = fs.add_parser("steer", help="steer by a feature (add its decoder direction, or clamp it)")
    _sae_args(p)
    p.add_argument("--feature", type=int, required=True)
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="add: × the mean activation norm at the SAE's hook, as in `steer` (|α| ≤ 10, default 0.2); "
        "clamp: the activation value (required)",
    )
    p.add_argument("--mode", choices=["add", "clamp"], default="add")
    p.add_argument("--position", choices=["last", "all"], default="last")
    evaluation_args(p)  # --prompt (repeatable), --task, held-out texts, --instruction, bootstrap
    p.add_argument(
        "--out",
        default=None,
        help="also save the feature's vector in this folder (mode add; `steer contrastive apply --vectors` "
        "applies it)",
    )
    p.set_defaults(func=cmd_steer)

    p = fs.add_parser("attribute", help="which features drive an output token (activation × gradient)")
    _sae_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--target", required=True, help="the output token (text; its first token is used)")
    p.add_argument("--contrast", default=None, help="a second token: the metric is the logit difference")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--check", action="store_true", help="also ablate the top features for real and compare")
    p.set_defaults(func=cmd_attribute)

    p = fs.add_parser("train", help="train an SAE with sae-lens on the offline Wikipedia train split")
    model_args(p)
    p.add_argument("--hook", choices=["resid_post", "attn_out", "mlp_out"], required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--latents", type=int, required=True)
    p.add_argument("--architecture", choices=["topk", "standard"], default="topk")
    p.add_argument("--topk", type=int, default=32)
    p.add_argument("--tokens", type=int, default=1_000_000, help="training tokens (epochs past the split)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--l1", type=float, default=5.0, help="L1 coefficient (standard architecture)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-tokens", type=int, default=51_200, help="test-split positions for the card (0: none)"
    )
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None, help="SAE folder (default: the user's SAE catalog)")
    p.set_defaults(func=cmd_train)

    p = fs.add_parser("index", help="precompute feature dashboards over the validation split")
    _sae_args(p)
    p.add_argument("--tokens", type=int, default=51_200)
    p.add_argument("--contexts", type=int, default=10)
    p.set_defaults(func=cmd_index)
