"""Property tests: thousands of hostile inputs to the validators give only clear, typed errors."""

from __future__ import annotations

import contextlib

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
