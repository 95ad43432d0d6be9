"""HeadSet: the one head-selection grammar (L.H, L.*, *.H), checked against a model shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from headscope.errors import InputError
from headscope.selection import HeadSet, parse_patterns


def test_grammar_expands_wildcards() -> None:
    hs = HeadSet.parse("9.4, 2.*, *.1", n_layers=12, n_heads=5)
    expected = {(9, 4), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)} | {(layer, 1) for layer in range(12)}
    assert set(hs) == expected and len(hs) == len(expected)
    assert HeadSet.parse("*.*", 2, 3).names() == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]
    assert not HeadSet.parse("", 2, 3)


def test_bounds_and_legacy_indices_are_refused_with_a_hint() -> None:
    with pytest.raises(InputError, match=r"head 4 .* out of range"):
        HeadSet.parse("9.4", 12, 3)
    with pytest.raises(InputError, match=r"layer 99 .* out of range"):
        HeadSet.parse("99.0", 12, 3)
    with pytest.raises(InputError, match=r"'\*\.3'"):
        parse_patterns("3")
    with pytest.raises(InputError, match=r"not L\.H"):
        parse_patterns("9-4")


def test_canonical_text_folds_full_layers_and_sorts() -> None:
    hs = HeadSet.parse("3.1, 1.0, 1.1, 1.2, 3.0", 4, 3)
    assert str(hs) == "1.*, 3.0, 3.1"
    assert HeadSet.parse(str(hs), 4, 3) == hs
    assert hs.by_layer() == {1: (0, 1, 2), 3: (0, 1)}
    assert hs.toggle((3, 0)).names() == ["1.0", "1.1", "1.2", "3.1"]
    assert len(hs.complement()) == 12 - len(hs)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=30))
def test_round_trip_through_text_and_mask(pairs: list[tuple[int, int]]) -> None:
    hs = HeadSet.of(pairs, 6, 4)
    assert set(hs) == set(pairs)
    assert HeadSet.parse(str(hs), 6, 4) == hs
    assert HeadSet.from_mask(hs.mask()) == hs
    assert int(np.sum(hs.mask())) == len(set(pairs))


def test_pattern_text_is_the_model_free_form_configs_store() -> None:
    from headscope.selection import pattern_text

    assert pattern_text(" 9.4 ; 12.* ,*.3") == "9.4, 12.*, *.3"
    assert pattern_text([(1, 2), [0, 0]]) == "1.2, 0.0"
    assert pattern_text(HeadSet.parse("1.*", 2, 3)) == "1.*"
    assert pattern_text(None) is None and pattern_text("") == ""
    for bad, message in (("9.x", "is not L.H"), ([3], "not a \\(layer, head\\) pair"), (3.5, "must be text")):
        with pytest.raises(InputError, match=message):
            pattern_text(bad)
