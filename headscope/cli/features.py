"""`headscope features ...`: SAEs in SAELens format — list, top, page, recon, eval, steer, attribute, train, index.

`--sae` takes a catalog name (`features list`), `pretrained:RELEASE:SAE_ID` (local Hugging Face cache only) or,
here on the command line only, an SAE folder path. Values are checked before a model is loaded.
`to_argv(config)` writes the command line of a TrainConfig / IndexConfig / EvalConfig (the exact inverse of
`config_of(parsed args)`), so a job can be re-run from its config.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headscope.cli.common import emit, model_args, progress_bar, text_or_file, writable_dir
from headscope.errors import InputError
from headscope.files import read_text

if TYPE_CHECKING:
    from headscope.features.evaluate import EvalConfig
    from headscope.features.index import IndexConfig
    from headscope.features.steer import FeatureSteerConfig
    from headscope.features.train import TrainConfig

EVAL_MAX_FILE_BYTES = 8 * 1024 * 1024


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
        legend = [f"#{r['feature']} fires on " + ", ".join(repr(t) for t in r["tokens"][:5])
                  for r in p.get("fires_on", []) if r["tokens"]]  # fmt: skip
        return "\n".join([*rows, f"explained variance (positions ≥ 1): {p['explained_variance']}", *legend])

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
    from headscope.features.steer import steer, vector_file
    from headscope.steering import vectors

    cfg = steer_config(args)  # refuses NaN before loading
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
    from headscope.features.summary import attribute_checked

    if not args.prompt.strip():
        raise InputError("--prompt is empty")
    if not 1 <= args.top <= attribution.MAX_TOP:
        raise InputError(f"--top must be in [1, {attribution.MAX_TOP}], got {args.top}")
    _check_sae(args)
    handle, fsae = _load(args)
    metric = attribution.metric_for(handle, args.target, args.contrast)
    result = attribute_checked(handle, fsae, args.prompt, metric, args.top, with_check=args.check)
    emit(result.to_json(), args.json, _plain)


def train_config(args: argparse.Namespace) -> TrainConfig:
    from headscope.features.train import TrainConfig

    return TrainConfig(args.hook, args.layer, args.latents, args.architecture, args.topk, args.tokens,
                       args.batch_size, args.lr, args.l1, args.seed, args.ctx, args.eval_tokens, args.corpus,
                       args.dtype)  # fmt: skip


def index_config(args: argparse.Namespace) -> IndexConfig:
    from headscope.features.index import IndexConfig

    return IndexConfig(args.tokens, args.contexts, args.before, args.after, args.bins, args.logits, args.ctx,
                       args.batch_size, args.corpus)  # fmt: skip


def eval_config(args: argparse.Namespace) -> EvalConfig:
    from headscope.features.evaluate import EvalConfig

    return EvalConfig(
        args.ctx, args.batch_size, args.max_tokens, args.dense_threshold, args.min_ablation_nats
    )


def steer_config(args: argparse.Namespace) -> FeatureSteerConfig:
    from headscope.features.steer import FeatureSteerConfig
    from headscope.steering.direction import DEFAULT_ALPHA

    if args.alpha is None and args.mode == "clamp":
        raise InputError("--mode clamp needs --alpha (the value to clamp the feature's activation to)")
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    return FeatureSteerConfig(args.feature, alpha, args.mode, args.position)


def config_of(args: argparse.Namespace) -> Any:
    """The config a parsed `features train|index|eval|steer` command line stands for."""
    makers = {"train": train_config, "index": index_config, "eval": eval_config, "steer": steer_config}
    if args.features_command not in makers:
        raise InputError(f"features {args.features_command} has no config")
    return makers[args.features_command](args)


ARGV_CONFIGS = (
    "headscope.features.train:TrainConfig",
    "headscope.features.index:IndexConfig",
    "headscope.features.evaluate:EvalConfig",
    "headscope.features.steer:FeatureSteerConfig",
)
DEFAULT_SAE = "res6"  # the first shipped SAE of the default model: `to_argv`'s --sae when none is given


def to_argv(config: Any, *, sae: str = DEFAULT_SAE, model: str | None = None, text: str | None = None,
            heldout: str | None = None, out: str | None = None, name: str | None = None,
            max_new_tokens: int = 24) -> list[str]:  # fmt: skip
    """What follows `headscope` to run `config` (`features train` / `index` / `eval`); the run's own arguments (not
    part of a config) are keywords: `sae` (index, eval, steer), `text` or `heldout` (eval; default the wiki-test
    set), `text` as the prompt and `max_new_tokens` (steer), `out` and `name` (train), `model`. Values are written `--flag=value` so a text starting with '-' stays one."""
    from headscope.features.evaluate import EvalConfig
    from headscope.features.index import IndexConfig
    from headscope.features.steer import FeatureSteerConfig
    from headscope.features.train import TrainConfig

    run = [f"--model={model}"] if model is not None else []
    if isinstance(config, TrainConfig):
        c = config
        run += [f"--out={out}"] * (out is not None) + [f"--name={name}"] * (name is not None)
        return ["features", "train", f"--hook={c.kind}", f"--layer={c.layer}", f"--latents={c.latents}",
                f"--architecture={c.architecture}", f"--topk={c.k}", f"--tokens={c.tokens}",
                f"--batch-size={c.batch_size}", f"--lr={c.lr!r}", f"--l1={c.l1!r}", f"--seed={c.seed}",
                f"--ctx={c.ctx}", f"--eval-tokens={c.eval_tokens}", f"--corpus={c.corpus}", f"--dtype={c.dtype}",
                *run]  # fmt: skip
    if isinstance(config, IndexConfig):
        c = config
        return ["features", "index", f"--sae={sae}", f"--tokens={c.tokens}", f"--contexts={c.contexts}",
                f"--before={c.before}", f"--after={c.after}", f"--bins={c.bins}", f"--logits={c.logits}",
                f"--ctx={c.ctx}", f"--batch-size={c.batch_size}", f"--corpus={c.corpus}", *run]  # fmt: skip
    if isinstance(config, EvalConfig):
        c = config
        source = f"--text={text}" if text is not None else f"--heldout={heldout or 'wiki-test'}"
        return ["features", "eval", f"--sae={sae}", source, f"--ctx={c.ctx}", f"--batch-size={c.batch_size}",
                f"--max-tokens={c.max_tokens}", f"--dense-threshold={c.dense_threshold!r}",
                f"--min-ablation-nats={c.min_ablation_nats!r}", *run]  # fmt: skip
    if isinstance(config, FeatureSteerConfig):
        c = config
        return ["features", "steer", f"--sae={sae}", f"--feature={c.feature}", f"--alpha={c.alpha!r}",
                f"--mode={c.mode}", f"--position={c.position}", f"--prompt={text or 'The'}",
                f"--max-new-tokens={max_new_tokens}", *run]  # fmt: skip
    raise TypeError(f"no command line for {type(config).__name__}")


def attribute_argv(prompt: str, target: str, *, sae: str = DEFAULT_SAE, contrast: str | None = None,
                   top: int = 20, check: bool = False, model: str | None = None) -> list[str]:  # fmt: skip
    """What follows `headscope` to attribute `target` after `prompt` to the SAE's features (no config type)."""
    argv = [
        "features",
        "attribute",
        f"--sae={sae}",
        f"--prompt={prompt}",
        f"--target={target}",
        f"--top={top}",
    ]
    argv += [f"--contrast={contrast}"] * (contrast is not None) + ["--check"] * check
    return argv + ([f"--model={model}"] if model is not None else [])


def config_from_argv(argv: Sequence[str]) -> Any:
    """The config the command `argv` (what follows `headscope`) runs, as `main` builds it."""
    from headscope.cli import build_parser

    args = build_parser().parse_args(list(argv))
    if args.command != "features":
        raise InputError(f"not a features command: {' '.join(argv[:2])}")
    return config_of(args)


def cmd_train(args: argparse.Namespace) -> None:
    from headscope.features import catalog
    from headscope.features.train import train
    from headscope.models import ModelHandle

    cfg = train_config(args)
    name = args.name or f"{args.hook}-{args.layer}-{args.architecture}-{args.latents}"
    out = writable_dir(args.out or catalog.user_root() / _model_name(args) / name)
    handle = ModelHandle.load(args.model, device=args.device)
    cfg.site.check(handle.facts.n_layers)
    with progress_bar("train SAE") as progress:
        result = train(handle, cfg, out, name=name, progress=progress)
    emit(result.to_json(), args.json, _plain)


def cmd_index(args: argparse.Namespace) -> None:
    from headscope.features.index import build

    cfg = index_config(args)
    _check_sae(args)
    handle, fsae = _load(args)
    with progress_bar("index") as progress:
        header = build(handle, fsae, cfg, progress=progress)
    emit(header, args.json, _plain)


def _eval_texts(args: argparse.Namespace) -> tuple[list[str] | None, str]:
    """(texts, source) from --text / --file (a .jsonl file: one text per line), or (None, set) for --heldout."""
    from headscope.features import heldout

    if args.heldout is not None:
        return None, args.heldout
    if args.text is not None:
        texts, source = [args.text], "text"
    else:
        raw = read_text(args.file, "text", limit=EVAL_MAX_FILE_BYTES)
        texts, source = heldout.read_texts(raw, str(args.file).endswith(".jsonl")), Path(args.file).name
    if not any(t.strip() for t in texts):
        raise InputError("the text is empty")
    return texts, source


def cmd_eval(args: argparse.Namespace) -> None:
    from headscope.features.summary import evaluate_on

    cfg = eval_config(args)
    texts, source = _eval_texts(args)
    _check_sae(args)
    handle, fsae = _load(args)
    with progress_bar("evaluate SAE") as step:
        result = evaluate_on(handle, fsae, source, texts, cfg, step)
    emit(result.to_json(), args.json, _eval_lines)


def _eval_lines(p: dict) -> str:
    score = p["ce_loss_score"] if p["ce_loss_score"] is not None else p["ce_loss_score_note"]
    return "\n".join([
        f"{p['sae']} at {p['hook']} on {p['source']}: {p['tokens']} positions in {p['sequences']} sequences"
        f"{' (truncated at --max-tokens)' if p['truncated'] else ''}; position 0 {p['position_0']}",
        f"explained variance {p['explained_variance']}   L0 {p['l0']}   dead {p['dead_fraction']}   "
        f"dense (> {p['dense_threshold']:g} of positions) {p['dense_fraction']}",
        f"CE clean {p['ce_loss_clean']}  with SAE {p['ce_loss_with_sae']}  ablated {p['ce_loss_ablated']}  "
        f"KL(clean || SAE) {p['kl_div']} nats",
        f"ce_loss_score: {score}",
    ])  # fmt: skip


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
        "features",
        help="SAE features (SAELens format): list, top, page, recon, eval, steer, attribute, train, index",
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

    p = fs.add_parser("eval", help="judge an SAE on any text: EV, L0, dead/dense latents, CE score, KL")
    _sae_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text")
    src.add_argument("--file", help="a UTF-8 text file (≤ 8 MB; a .jsonl file: one text per line)")
    src.add_argument("--heldout", choices=["wiki-test", "chat"], help="a shipped held-out set")
    p.add_argument(
        "--ctx", type=int, default=128, help="longer texts are cut into sequences of this many tokens"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=262_144, help="tokens evaluated at most")
    p.add_argument("--dense-threshold", type=float, default=0.1, help="dense: active on more than this share")
    p.add_argument("--min-ablation-nats", type=float, default=0.5,
                   help="ce_loss_score only when zero-ablating the site moves CE at least this much")  # fmt: skip
    p.set_defaults(func=cmd_eval)

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
    p.add_argument("--architecture", choices=["topk", "batchtopk", "standard"], default="topk")
    p.add_argument("--topk", type=int, default=32)
    p.add_argument("--tokens", type=int, default=1_000_000, help="training tokens (epochs past the split)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--l1", type=float, default=5.0, help="L1 coefficient (standard architecture)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-tokens", type=int, default=25_600, help="tokens of each held-out set for the card (0: none)"
    )
    p.add_argument("--ctx", type=int, default=128, help="window length of the training text")
    p.add_argument("--corpus", choices=["wiki", "excerpt"], default="wiki")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="the saved weights")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None, help="SAE folder (default: the user's SAE catalog)")
    p.set_defaults(func=cmd_train)

    p = fs.add_parser("index", help="precompute feature dashboards over the validation split")
    _sae_args(p)
    p.add_argument("--tokens", type=int, default=51_200)
    p.add_argument("--contexts", type=int, default=10)
    p.add_argument("--before", type=int, default=12, help="context tokens before the activating one")
    p.add_argument("--after", type=int, default=4)
    p.add_argument("--bins", type=int, default=20)
    p.add_argument("--logits", type=int, default=10, help="promoted / suppressed tokens per feature")
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--corpus", choices=["wiki", "excerpt"], default="wiki")
    p.set_defaults(func=cmd_index)
