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
    except (InputError, TypeError) as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(alpha=_ANY_SCALAR)
def test_steer_config_validates_alpha(alpha: object) -> None:
    import math

    from headscope.steering import SteerConfig

    try:
        cfg = SteerConfig(alpha=alpha)  # type: ignore[arg-type]
    except (InputError, TypeError) as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert math.isfinite(cfg.alpha)


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
