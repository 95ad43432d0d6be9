"""Hypothesis strategies for every config a CLI module can write as arguments (`ARGV_CONFIGS`), keyed
"module:Class". tests/unit/test_cli_argv.py draws from them to check `config_from_argv(to_argv(c)) == c`.

A capability that adds `to_argv` adds a strategy here for each of its config types: it should reach every option
the command has (values at the edges of their ranges included), and produce only valid configs (build through the
config itself; `InputError` rejects are filtered, but a strategy that is mostly invalid fails the health check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from headscope.errors import InputError

Strategy = st.SearchStrategy[Any]
unit = st.floats(0.0, 1.0, allow_nan=False)


def _valid(build: Callable[..., Any]) -> Callable[..., Any]:
    """`build(**drawn)`, or None when the config refuses the combination (filtered out)."""

    def make(**kw: Any) -> Any:
        try:
            return build(**kw)
        except InputError:
            return None

    return make


def heads_text() -> Strategy:
    one = st.one_of(
        st.tuples(st.integers(0, 40), st.integers(0, 15)).map(lambda p: f"{p[0]}.{p[1]}"),
        st.integers(0, 40).map(lambda layer: f"{layer}.*"),
        st.integers(0, 15).map(lambda h: f"*.{h}"),
    )
    return st.lists(one, min_size=1, max_size=4).map(", ".join)


def blocks() -> Strategy:
    from headscope.attention import BLOCK_SOURCES
    from headscope.attention.blocks import BlockSpec

    spans = st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20)), max_size=3).map(
        lambda xs: tuple((s + 100 * i, s + 100 * i + w) for i, (s, w) in enumerate(xs))
    )
    return st.builds(
        _valid(BlockSpec), source=st.sampled_from(list(BLOCK_SOURCES)), size=st.integers(1, 4096), spans=spans
    ).filter(lambda b: b is not None)


def dials(lam: Strategy = unit) -> Strategy:
    from headscope.attention import MODES, SCHEDULES, LocalityDial
    from headscope.attention.locality import MAX_BETA, MAX_STRENGTH

    def build(schedule: str, weights: list[float], **kw: Any) -> Any:
        return LocalityDial(
            schedule=schedule, layer_weights=tuple(weights) if schedule == "explicit" else (), **kw
        )

    return st.builds(
        _valid(build), lam=lam, mode=st.sampled_from(list(MODES)), schedule=st.sampled_from(list(SCHEDULES)),
        weights=st.lists(unit, min_size=1, max_size=6), beta=st.floats(1.0, MAX_BETA),
        heads=st.none() | heads_text(), strength=st.floats(1e-3, MAX_STRENGTH), blocks=blocks(),
    ).filter(lambda d: d is not None)  # fmt: skip


def entropy_configs() -> Strategy:
    from headscope.probes.backends import BACKENDS
    from headscope.probes.report import EntropyConfig

    return st.builds(EntropyConfig, backend=st.sampled_from(BACKENDS), dial=dials())


def sweep_configs() -> Strategy:
    from headscope.attention import TARGETS
    from headscope.probes.sweep import MAX_POINTS, SweepConfig

    return st.builds(
        SweepConfig, lambdas=st.lists(unit, min_size=1, max_size=MAX_POINTS).map(tuple),
        dial=dials(st.just(0.0)), target=st.none() | st.sampled_from(list(TARGETS)),
    )  # fmt: skip


def view_configs() -> Strategy:
    from headscope.probes.view import ViewConfig

    return st.builds(
        ViewConfig, dial=dials(), shown=st.none() | heads_text(), max_tokens=st.integers(2, 2048)
    )


def localist_train_configs() -> Strategy:
    from headscope.localist.train_objective import PENALTIES
    from headscope.localist.train_sweep import DEEP
    from headscope.localist.training import TRAIN_SCHEDULES, TrainConfig

    def build(layers: int, steps: int | None, **kw: Any) -> Any:
        base = DEEP if layers >= 6 else TrainConfig()
        return replace(base, n_layers=layers, **kw, **({} if steps is None else {"steps": steps}))

    return st.builds(
        _valid(build), lam=unit, schedule=st.sampled_from(list(TRAIN_SCHEDULES)), beta=st.floats(1.0, 20.0),
        layers=st.integers(1, 12), steps=st.none() | st.integers(1, 100_000), seed=st.integers(0, 2**31 - 1),
        penalty=st.sampled_from(list(PENALTIES)),
    ).filter(lambda c: c is not None)  # fmt: skip


def localist_sweep_configs() -> Strategy:
    from headscope.localist.train_sweep import SweepConfig

    def build(lambdas: list[float], betas: list[float], progressive: bool, steps: int | None) -> Any:
        cfg = SweepConfig(lambdas=tuple(lambdas), betas=tuple(betas), progressive=progressive)
        if steps is None:
            return cfg
        return replace(cfg, base=replace(cfg.base, steps=steps), deep=replace(cfg.deep, steps=steps))

    return st.builds(
        _valid(build), lambdas=st.lists(unit, min_size=1, max_size=8), progressive=st.booleans(),
        betas=st.lists(st.floats(1.0, 20.0), min_size=1, max_size=4), steps=st.none() | st.integers(1, 100_000),
    ).filter(lambda c: c is not None)  # fmt: skip


def decode_commands() -> Strategy:
    from headscope.cli.decoding import CompareCommand
    from headscope.decoding.config import _INTEGERS, _NUMBERS, DecodeConfig
    from headscope.decoding.strategies import STRATEGIES as DECODERS

    ints = {k: st.none() | st.integers(lo, hi) for k, (lo, hi) in _INTEGERS.items()}
    nums = {k: st.none() | st.floats(lo, hi, allow_nan=False) for k, (lo, hi) in _NUMBERS.items()}
    words = st.text("abcxyz_- '\"=.", min_size=1, max_size=12).filter(str.strip)

    def build(intervention: Any, ablate: str | None, dial: Any, **kw: Any) -> Any:
        given = {k: v for k, v in kw.items() if v is not None}
        return DecodeConfig(**given, ablate_heads=ablate if intervention == "ablate" else None,
                            dial=dial if intervention == "dial" else None)  # fmt: skip

    configs = st.builds(
        _valid(build), intervention=st.sampled_from(["none", "ablate", "dial"]), ablate=heads_text(),
        dial=dials().filter(lambda d: not d.blocks.spans),  # the decode command line has no spans
        adaptive_draft=st.booleans(), attention_entropy=st.booleans(), ablation=st.sampled_from(["mean", "zero"]),
        regex=st.none() | st.just("[0-9]+"), task=st.none() | st.just("summarization"), **ints, **nums,
    ).filter(lambda c: c is not None)  # fmt: skip
    names = st.lists(
        st.sampled_from([n for n in DECODERS if n != "speculative"]), min_size=1, max_size=4, unique=True
    )
    return st.builds(
        CompareCommand, prompt=words, strategies=names.map(tuple), chat=st.booleans(),
        model=st.none() | st.just("tiny-gpt2"), device=st.none() | st.just("cpu"), config=configs,
    )  # fmt: skip


def circuit_configs() -> Strategy:
    from headscope.circuits.config import EDGE_METHODS, CircuitConfig
    from headscope.circuits.sae import DECODER_NORMS, SAEConfig
    from headscope.circuits.tasks import TASKS
    from headscope.circuits.variants import VARIANTS

    saes = st.builds(
        _valid(SAEConfig), n_latents=st.integers(2, 4096), l1=st.none() | st.floats(0.0, 10.0),
        lr=st.floats(1e-6, 1.0), epochs=st.integers(1, 10_000), decoder_norm=st.sampled_from(list(DECODER_NORMS)),
    ).filter(lambda c: c is not None)  # fmt: skip
    layers = st.none() | st.tuples(st.integers(0, 40), st.integers(1, 20)).map(lambda p: (p[0], p[0] + p[1]))
    k_or_threshold = st.one_of(
        st.tuples(st.none() | st.integers(1, 100_000), st.none()),
        st.tuples(st.none(), st.floats(-10.0, 10.0, allow_nan=False)),
    )

    def build(kt: tuple[Any, Any], **kw: Any) -> Any:
        return CircuitConfig(circuit_k=kt[0], circuit_threshold=kt[1], **kw)

    return st.builds(
        _valid(build), task=st.sampled_from([*TASKS, "custom"]), n_examples=st.integers(2, 512),
        seed=st.integers(0, 2**31 - 1), n_train=st.integers(2, 1024), reduce=st.sampled_from(["mean", "last"]),
        sae=saes, kt=k_or_threshold, gt_frac=st.floats(1e-6, 0.999), layers=layers,
        sae_seed=st.none() | st.integers(0, 2**31 - 1), ig_steps=st.integers(1, 64), faithfulness=st.booleans(),
        edges=st.booleans(), edge_heads=st.integers(2, 200), stability=st.booleans(),
        n_bootstrap=st.integers(10, 10_000), stability_seeds=st.integers(1, 50),
        edge_methods=st.lists(st.sampled_from(list(EDGE_METHODS)), unique=True).map(tuple),
        edge_faithfulness=st.booleans(), intervals=st.booleans(), sae_variant=st.sampled_from(sorted(VARIANTS)),
    ).filter(lambda c: c is not None)  # fmt: skip


def features_train_configs() -> Strategy:
    from headscope.features.collect import CORPORA
    from headscope.features.sites import TRAIN_KINDS
    from headscope.features.train import ARCHITECTURES, TrainConfig

    return st.builds(
        _valid(TrainConfig), kind=st.sampled_from(list(TRAIN_KINDS)), layer=st.integers(0, 1000),
        latents=st.integers(8, 65536), architecture=st.sampled_from(list(ARCHITECTURES)), k=st.integers(1, 64),
        tokens=st.integers(256, 10**9), batch_size=st.integers(16, 65536),
        lr=st.floats(0.0, 1.0, exclude_min=True), l1=st.floats(0.0, 1000.0), seed=st.integers(0, 2**31 - 1),
        ctx=st.integers(8, 4096), eval_tokens=st.integers(0, 10**8), corpus=st.sampled_from(list(CORPORA)),
        dtype=st.sampled_from(["float16", "float32"]),
    ).filter(lambda c: c is not None)  # fmt: skip


def features_index_configs() -> Strategy:
    from headscope.features.collect import CORPORA
    from headscope.features.index import IndexConfig

    return st.builds(
        IndexConfig, tokens=st.integers(64, 10**8), contexts=st.integers(1, 100), before=st.integers(0, 256),
        after=st.integers(0, 256), bins=st.integers(2, 200), logits=st.integers(1, 100), ctx=st.integers(8, 4096),
        batch_size=st.integers(1, 256), corpus=st.sampled_from(list(CORPORA)),
    )  # fmt: skip


def features_eval_configs() -> Strategy:
    from headscope.features.evaluate import EvalConfig

    return st.builds(
        EvalConfig, ctx=st.integers(8, 4096), batch_size=st.integers(1, 256), max_tokens=st.integers(16, 10**8),
        dense_threshold=st.floats(0.0, 1.0, exclude_min=True), min_ablation_nats=st.floats(0.0, 100.0),
    )  # fmt: skip


def features_steer_configs() -> Strategy:
    from headscope.features.steer import MAX_CLAMP, MODES, FeatureSteerConfig
    from headscope.steering.direction import MAX_ALPHA
    from headscope.steering.hooks import POSITIONS

    def build(mode: str, alpha: float, **kw: Any) -> Any:
        return FeatureSteerConfig(alpha=alpha * (MAX_ALPHA if mode == "add" else MAX_CLAMP), mode=mode, **kw)

    return st.builds(
        _valid(build), feature=st.integers(0, 10**7), alpha=st.floats(-1.0, 1.0), mode=st.sampled_from(list(MODES)),
        position=st.sampled_from(list(POSITIONS)),
    ).filter(lambda c: c is not None)  # fmt: skip


def _steer_text() -> Strategy:
    """Free text as the steer options take it: non-empty, '-' first, '=', commas and spaces included."""
    return st.text("abxyz-=,. '\"", min_size=1, max_size=12).filter(str.strip)


def _steer_model() -> Strategy:
    from headscope.cli.steering_inputs import ModelOptions

    return st.builds(
        ModelOptions, model=st.none() | st.just("tiny-llama"), device=st.none() | st.sampled_from(["cpu", "cuda"]),
        device_map=st.none() | st.sampled_from(["auto", "balanced"]), max_memory=st.none() | _steer_text(),
        offload_dir=st.none() | _steer_text(), json=st.booleans(),
    )  # fmt: skip


def _steer_eval() -> Strategy:
    from headscope.cli.steering_inputs import EvalOptions

    def build(held: str | None, **kw: Any) -> Any:
        return EvalOptions(heldout_pos=held, heldout_neg=None if held is None else held + "n", **kw)

    return st.builds(
        build, task=st.none() | st.sampled_from(["sentiment", "ioi"]), held=st.none() | _steer_text(),
        prompts=st.lists(_steer_text(), max_size=3).map(tuple), instruction=st.none() | st.just("") | _steer_text(),
        max_new_tokens=st.integers(1, 128), resamples=st.integers(100, 100_000), seed=st.integers(0, 2**53),
    )  # fmt: skip


def steer_contrastive_runs() -> Strategy:
    from headscope.cli.steering_inputs import ContrastiveRun

    def build(where: tuple[int | None, str | None], inline: list[str], **kw: Any) -> Any:
        texts = {"pos_texts": tuple(inline), "neg_texts": tuple(reversed(inline))} if inline else {}
        return ContrastiveRun(layer=where[0], heads=where[1], **texts, **kw)

    where = st.one_of(st.just((None, None)), st.integers(0, 10_000).map(lambda n: (n, None)),
                      heads_text().map(lambda h: (None, h)))  # fmt: skip
    return st.builds(
        _valid(build), model=_steer_model(), evaluation=_steer_eval(), pos=st.none() | _steer_text(),
        neg=st.none() | _steer_text(), where=where, alpha=st.floats(-10.0, 10.0, allow_nan=False),
        position=st.sampled_from(["last", "all"]), pooling=st.sampled_from(["mean", "last"]),
        out=st.none() | _steer_text(), inline=st.lists(_steer_text(), max_size=3),
    ).filter(lambda c: c is not None)  # fmt: skip


def steer_contrastive_applies() -> Strategy:
    from headscope.cli.steering_inputs import ContrastiveApply

    return st.builds(
        _valid(ContrastiveApply), vectors=_steer_text(), model=_steer_model(), evaluation=_steer_eval(),
        alpha=st.none() | st.floats(-10.0, 10.0, allow_nan=False), position=st.none() | st.sampled_from(["last", "all"]),
    ).filter(lambda c: c is not None)  # fmt: skip


def steer_lofit_trains() -> Strategy:
    from headscope.cli.steering_inputs import LofitTrain

    def build(source: tuple[str | None, str | None], **kw: Any) -> Any:
        return LofitTrain(task=source[0], data=source[1], **kw)

    source = st.sampled_from(["antonyms", "ioi"]).map(lambda t: (t, None)) | _steer_text().map(
        lambda d: (None, d)
    )
    return st.builds(
        _valid(build), model=_steer_model(), source=source, heads=st.none() | heads_text(),
        k=st.none() | st.integers(1, 64), scale_steps=st.integers(1, 500), bias_steps=st.integers(1, 500),
        batch_size=st.integers(1, 64), seed=st.integers(0, 2**31 - 1), random_sets=st.sampled_from([0, 20, 50]),
        eval_prompts=st.integers(1, 16), eval_tokens=st.integers(1, 32), resamples=st.integers(100, 10_000),
        instruction=st.none() | st.just("") | _steer_text(), out=st.none() | _steer_text(),
    ).filter(lambda c: c is not None)  # fmt: skip


def steer_lofit_applies() -> Strategy:
    from headscope.cli.steering_inputs import LofitApply

    return st.builds(
        _valid(LofitApply), vectors=_steer_text(), model=_steer_model(), evaluation=_steer_eval()
    ).filter(lambda c: c is not None)


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "headscope.probes.report:EntropyConfig": entropy_configs,
    "headscope.probes.sweep:SweepConfig": sweep_configs,
    "headscope.probes.view:ViewConfig": view_configs,
    "headscope.localist.training:TrainConfig": localist_train_configs,
    "headscope.localist.train_sweep:SweepConfig": localist_sweep_configs,
    "headscope.cli.decoding:CompareCommand": decode_commands,
    "headscope.circuits.config:CircuitConfig": circuit_configs,
    "headscope.features.train:TrainConfig": features_train_configs,
    "headscope.features.index:IndexConfig": features_index_configs,
    "headscope.features.evaluate:EvalConfig": features_eval_configs,
    "headscope.features.steer:FeatureSteerConfig": features_steer_configs,
    "headscope.cli.steering_inputs:ContrastiveRun": steer_contrastive_runs,
    "headscope.cli.steering_inputs:ContrastiveApply": steer_contrastive_applies,
    "headscope.cli.steering_inputs:LofitTrain": steer_lofit_trains,
    "headscope.cli.steering_inputs:LofitApply": steer_lofit_applies,
}
