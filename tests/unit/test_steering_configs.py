"""Steering configs validate themselves: hostile values (strings, fractions for integers, NaN, inf, bools, None)
give one InputError line naming the field — never a TypeError — and accepted values are stored clean."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headscope.errors import InputError
from headscope.steering.comparison import SideBySideConfig
from headscope.steering.contrastive import ContrastiveConfig
from headscope.steering.direction import MAX_ALPHA, SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.lofit import LofitConfig

FUZZ = settings(max_examples=300, deadline=None)
_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.just("3"), st.just("3.5"), st.just(" nan "),
)  # fmt: skip


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: GenConfig(max_new_tokens=3.5), "max_new_tokens"),  # type: ignore[arg-type]
        (lambda: GenConfig(max_new_tokens="many"), "max_new_tokens"),  # type: ignore[arg-type]
        (lambda: GenConfig(temperature="hot"), "temperature"),  # type: ignore[arg-type]
        (lambda: GenConfig(temperature=float("nan")), "temperature"),
        (lambda: LofitConfig(k=2.5), "k"),  # type: ignore[arg-type]
        (lambda: LofitConfig(k=0), "k"),
        (lambda: LofitConfig(scale_steps="3"), None),  # type: ignore[arg-type]  # an integral string is accepted as 3
        (lambda: LofitConfig(bias_steps=1.7), "bias_steps"),  # type: ignore[arg-type]
        (lambda: LofitConfig(batch_size=None), "batch_size"),  # type: ignore[arg-type]
        (lambda: LofitConfig(bias_lr="fast"), "bias_lr"),  # type: ignore[arg-type]
        (lambda: LofitConfig(bias_lr=0.0), "bias_lr"),
        (lambda: LofitConfig(l1=-1.0), "l1"),
        (lambda: LofitConfig(random_sets="yes"), "random_sets"),  # type: ignore[arg-type]
        (lambda: LofitConfig(random_sets=-1), "random_sets"),
        (lambda: LofitConfig(eval_prompts=0), "eval_prompts"),
        (lambda: LofitConfig(resamples=10), "resamples"),
        (lambda: SideBySideConfig(resamples=2.5), "resamples"),  # type: ignore[arg-type]
        (lambda: SideBySideConfig(seed=-1), "seed"),
        (lambda: SideBySideConfig(judge_layer="x"), "judge_layer"),  # type: ignore[arg-type]
        (lambda: SideBySideConfig(instruction=3), "instruction"),  # type: ignore[arg-type]
        (lambda: SideBySideConfig(gen=24), "gen"),  # type: ignore[arg-type]
        (lambda: ContrastiveConfig(layer=1.5), "layer"),  # type: ignore[arg-type]
        (lambda: ContrastiveConfig(layer="x"), "layer"),  # type: ignore[arg-type]
        (lambda: ContrastiveConfig(1, pooling="max"), "pooling"),  # type: ignore[arg-type]
        (lambda: SteerConfig("strong"), "alpha"),  # type: ignore[arg-type]
        (lambda: SteerConfig(MAX_ALPHA + 0.5), "alpha"),
        (lambda: SteerConfig(0.5, position="first"), "position"),  # type: ignore[arg-type]
    ],
)
def test_bad_config_values_are_one_line(build, field: str | None) -> None:
    if field is None:
        assert build().scale_steps == 3
        return
    with pytest.raises(InputError, match=field) as err:
        build()
    assert "\n" not in str(err.value)


@FUZZ
@given(alpha=_ANY, position=_ANY)
def test_steer_config_fuzz(alpha: object, position: object) -> None:
    try:
        cfg = SteerConfig(alpha, position)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(cfg.alpha, float) and math.isfinite(cfg.alpha) and abs(cfg.alpha) <= MAX_ALPHA


@FUZZ
@given(k=_ANY, steps=_ANY, lr=_ANY, seed=_ANY)
def test_lofit_config_fuzz(k: object, steps: object, lr: object, seed: object) -> None:
    try:
        cfg = LofitConfig(k=k, scale_steps=steps, bias_lr=lr, seed=seed)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert cfg.k is None or (isinstance(cfg.k, int) and cfg.k >= 1)
        assert isinstance(cfg.scale_steps, int) and isinstance(cfg.seed, int) and 0 < cfg.bias_lr <= 1


@FUZZ
@given(max_new=_ANY, temperature=_ANY, layer=_ANY)
def test_gen_and_contrastive_config_fuzz(max_new: object, temperature: object, layer: object) -> None:
    for build in (lambda: GenConfig(max_new, temperature), lambda: ContrastiveConfig(layer)):  # type: ignore[arg-type]
        try:
            cfg = build()
        except InputError as e:
            assert str(e) and "\n" not in str(e)
        else:
            if isinstance(cfg, GenConfig):
                assert isinstance(cfg.max_new_tokens, int) and math.isfinite(cfg.temperature)
            else:
                assert cfg.layer is None or isinstance(cfg.layer, int)


@FUZZ
@given(resamples=_ANY, seed=_ANY, judge=_ANY, instruction=_ANY)
def test_side_by_side_config_fuzz(
    resamples: object, seed: object, judge: object, instruction: object
) -> None:
    try:
        cfg = SideBySideConfig(GenConfig(), instruction, resamples, seed, judge)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(cfg.resamples, int) and cfg.resamples >= 100 and isinstance(cfg.seed, int)
        assert cfg.judge_layer is None or isinstance(cfg.judge_layer, int)
        assert cfg.instruction is None or (isinstance(cfg.instruction, str) and cfg.instruction.strip())
