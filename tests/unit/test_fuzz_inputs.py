"""Property tests: thousands of hostile inputs to the validators give only clear, typed errors."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headscope.errors import HeadscopeError, InputError, UnknownModelError
from headscope.models import CATALOG, ModelHandle, resolve

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.text(max_size=200))
def test_resolve_in_app_mode_accepts_only_catalog_names(model_id: str) -> None:
    try:
        entry = resolve(model_id, allow_external=False)
    except (UnknownModelError, InputError) as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert entry.name in CATALOG and entry.name == model_id.strip()


@FUZZ
@given(st.text(max_size=300))
def test_tokenize_gives_ids_or_a_clear_error(tiny_llama: ModelHandle, text: str) -> None:
    try:
        ids = tiny_llama.tokenize(text, max_tokens=256)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert 0 < ids.shape[1] <= 256
        assert tiny_llama.decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=60))
def test_resolve_external_never_crashes(model_id: str) -> None:
    with contextlib.suppress(HeadscopeError):
        resolve(model_id)


def test_fuzz_covers_control_characters() -> None:
    with pytest.raises(UnknownModelError):
        resolve("smollm2-135m\x00", allow_external=False)


# -- capability validators and report parsing ------------------------------------------------------------------
_ANY_SCALAR = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.text(max_size=8),
    st.none(),
)


@FUZZ
@given(
    lam=_ANY_SCALAR,
    mode=st.text(max_size=10) | st.sampled_from(["distance", "block", "window"]),
    beta=_ANY_SCALAR,
)
def test_locality_dial_validates_itself(lam: object, mode: str, beta: object) -> None:
    from headscope.attention import LocalityDial

    try:
        dial = LocalityDial(lam=lam, mode=mode, schedule="progressive", beta=beta)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert 0.0 <= dial.lam <= 1.0 and dial.beta >= 1.0


@FUZZ
@given(temperature=_ANY_SCALAR, top_p=_ANY_SCALAR, max_new=_ANY_SCALAR)
def test_decode_config_validates_itself(temperature: object, top_p: object, max_new: object) -> None:
    from headscope.decoding import DecodeConfig

    try:
        DecodeConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(alpha=_ANY_SCALAR)
def test_steer_config_validates_alpha(alpha: object) -> None:
    import math

    from headscope.steering import SteerConfig

    try:
        cfg = SteerConfig(alpha=alpha)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert math.isfinite(cfg.alpha)


# Every frozen config of every capability: any field set to a hostile scalar (string, NaN, ±inf, bool, fraction,
# huge integer, None) gives the config itself or one InputError line — never a TypeError or a traceback later.
CONFIGS = [
    ("headscope.attention", "LocalityDial"),
    ("headscope.probes.probe", "ProbeConfig"),
    ("headscope.probes.sweep", "SweepConfig"),
    ("headscope.circuits.config", "CircuitConfig"),
    ("headscope.circuits.config", "SAEConfig"),
    ("headscope.decoding.config", "DecodeConfig"),
    ("headscope.steering.contrastive", "ContrastiveConfig"),
    ("headscope.steering.direction", "SteerConfig"),
    ("headscope.steering.generate", "GenConfig"),
    ("headscope.steering.lofit", "LofitConfig"),
    ("headscope.localist.training", "TrainConfig"),
    ("headscope.localist.train_sweep", "SweepConfig"),
    ("headscope.features.train", "TrainConfig"),
    ("headscope.features.steer", "FeatureSteerConfig"),
    ("headscope.features.index", "IndexConfig"),
]
REQUIRED: dict[str, dict[str, object]] = {  # valid values for fields without a default
    "headscope.features.train.TrainConfig": {"kind": "resid_post", "layer": 1, "latents": 64},
    "headscope.features.steer.FeatureSteerConfig": {"feature": 0},
}
_HOSTILE = st.one_of(
    _ANY_SCALAR,
    st.booleans(),
    st.sampled_from([0.5, -1, 10**12, float("nan"), float("-inf"), "1", "", "nan", (), (1, 2), [0.5]]),
)


@pytest.mark.parametrize(("module", "name"), CONFIGS, ids=[f"{m.rsplit('.', 1)[1]}.{n}" for m, n in CONFIGS])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_config_field_gives_a_config_or_one_input_error(
    module: str, name: str, data: st.DataObject
) -> None:
    import dataclasses
    import importlib

    cls = getattr(importlib.import_module(module), name)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    field = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(_HOSTILE, label="value")
    try:
        cls(**{**REQUIRED.get(f"{module}.{name}", {}), field: value})
    except InputError as e:
        assert str(e) and "\n" not in str(e)


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps(v).encode())))
def test_report_parsing_gives_only_clear_errors(data: bytes) -> None:
    from headscope.circuits import loads_report

    with pytest.raises(InputError) as err:
        loads_report(data)
    assert str(err.value) and "Traceback" not in str(err.value)
