"""DecodeConfig refuses bad values with one InputError line (never a TypeError, never a silent truncation), and
the category prompt sets build from the shipped files."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headscope.decoding import DecodeConfig
from headscope.decoding.config import _INTEGERS, _NUMBERS
from headscope.decoding.prompts import CATEGORIES, load_categories, render_messages
from headscope.errors import InputError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_ANY = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**7), max_value=10**7),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@FUZZ
@given(field=st.sampled_from(sorted({**_INTEGERS, **_NUMBERS})), value=_ANY)
def test_every_numeric_field_takes_a_number_in_range_or_says_why(field: str, value: object) -> None:
    try:
        cfg = DecodeConfig(**{field: value})  # type: ignore[arg-type]
    except InputError as e:
        assert str(e).startswith(field) and "\n" not in str(e)
    else:
        got = getattr(cfg, field)
        lo, hi = {**_INTEGERS, **_NUMBERS}[field]
        assert math.isfinite(got) and lo <= got <= hi
        if field in _INTEGERS:
            assert isinstance(got, int) and got == float(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 3.5}, "max_new_tokens must be an integer"),
        ({"max_new_tokens": "abc"}, "max_new_tokens must be a number"),
        ({"temperature": float("nan")}, "temperature must be in"),
        ({"top_p": float("inf")}, "top_p must be in"),
        ({"seed": "1.7"}, "seed must be an integer"),
        ({"ablation": "erase"}, "ablation must be one of"),
        ({"ablate_heads": "9"}, "not L.H, L.\\* or \\*.H"),
        ({"ablate_heads": " , "}, "ablate_heads is empty"),
        ({"dial": 0.5}, "dial must be a LocalityDial"),
        ({"tree_size": 0}, "tree_size must be an integer in"),
        ({"regex": 5}, "regex must be text"),
        ({"attention_entropy": "yes"}, "attention_entropy must be true or false"),
    ],
)
def test_bad_values_are_one_clear_line(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        DecodeConfig(**kwargs)


def test_integral_strings_and_floats_are_accepted_as_integers() -> None:
    cfg = DecodeConfig(max_new_tokens="12", seed=3.0, top_p="0.5")  # type: ignore[arg-type]
    assert (cfg.max_new_tokens, cfg.seed, cfg.top_p) == (12, 3, 0.5)
    assert isinstance(cfg.max_new_tokens, int)


def test_categories_build_from_the_shipped_files(tiny_llama) -> None:
    cats = load_categories()
    assert tuple(cats) == CATEGORIES and all(len(items) >= 3 for items in cats.values())
    ids = {p.id for items in cats.values() for p in items}
    assert len(ids) == sum(len(items) for items in cats.values())  # unique ids
    summary = cats["summarization"][0].messages[0]["content"]
    assert "Beowulf is an Old English poem" in summary  # the passage comes from the shipped excerpt
    assert "Answer from the passage" in cats["rag"][0].messages[0]["content"]
    turns = cats["multi_turn"][0].messages
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    assert render_messages(tiny_llama, turns).count(turns[1]["content"]) == 1  # no chat template: joined text
