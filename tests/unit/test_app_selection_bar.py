"""The shared selection's value: grammar via HeadSet, toggles and boxes from grids, positions, shape checks."""

from __future__ import annotations

import pytest

from headscope.app import selection_bar as sel
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.selection import HeadSet


def test_toggle_adds_then_removes_a_head() -> None:
    s = sel.toggle(sel.empty(), 9, 4, 30, 9, "smollm2-135m")
    assert sel.describe(s) == "9.4" and s.n_layers == 30 and s.model == "smollm2-135m"
    s = sel.toggle(s, 12, 1, 30, 9, "smollm2-135m")
    assert sel.names(s) == ["9.4", "12.1"]
    assert sel.describe(sel.toggle(s, 9, 4, 30, 9, "smollm2-135m")) == "12.1"


def test_box_adds_every_head_of_the_rectangle_in_either_drag_direction() -> None:
    s = sel.box(sel.empty(), [3, 2], [1, 0], 4, 4, "m")
    assert sel.names(s) == ["2.0", "2.1", "3.0", "3.1"]
    full_layer = sel.box(sel.empty(), [1, 1], [0, 3], 4, 4, "m")
    assert sel.describe(full_layer) == "1.*"  # canonical text folds a whole layer


def test_heads_of_another_shape_are_refused_until_cleared() -> None:
    s = sel.toggle(sel.empty(), 9, 4, 30, 9, "smollm2-135m")
    with pytest.raises(InputError, match="clear it before selecting heads of a 2×4"):
        sel.toggle(s, 0, 0, 2, 4, "tiny-llama")


@pytest.mark.parametrize("bad", ["abc", float("nan"), float("inf"), 1.7, -1, 9])
def test_cells_outside_the_grid_are_one_line_errors(bad: object) -> None:
    with pytest.raises(InputError) as err:
        sel.toggle(sel.empty(), bad, 0, 9, 9, "m")
    assert "\n" not in str(err.value)


def test_typed_text_is_checked_against_the_model(tiny_llama: ModelHandle) -> None:
    s = sel.from_text(sel.empty(), "1.*, *.0", tiny_llama)
    assert sel.describe(s) == "0.0, 1.*" and s.model == "tiny-llama"
    assert sel.head_set(s, tiny_llama) == HeadSet.parse("0.0, 1.*", 2, 4)
    with pytest.raises(InputError, match="out of range"):
        sel.from_text(sel.empty(), "9.4", tiny_llama)
    with pytest.raises(InputError, match=r"is not L\.H"):
        sel.from_text(sel.empty(), "3", tiny_llama)


def test_head_set_refuses_a_selection_of_another_model(tiny_llama: ModelHandle) -> None:
    s = sel.toggle(sel.empty(), 9, 4, 30, 9, "smollm2-135m")
    with pytest.raises(InputError, match="30×9 model; tiny-llama is 2×4"):
        sel.head_set(s, tiny_llama)
    assert not sel.head_set(sel.empty(), tiny_llama)


def test_positions_toggle_and_parse_ranges() -> None:
    s = sel.toggle_position(sel.toggle_position(sel.empty(), 7), 3)
    assert sel.describe_positions(s) == "3, 7"
    assert sel.describe_positions(sel.toggle_position(s, 7)) == "3"
    assert sel.describe_positions(sel.positions_from_text(s, "10-12, 2")) == "2, 10, 11, 12"
    with pytest.raises(InputError, match="token position"):
        sel.positions_from_text(s, "a-b")


def test_a_forged_selection_value_is_checked_not_trusted() -> None:
    with pytest.raises(InputError):
        sel.heads_of({"heads": "99.99", "n_layers": 2, "n_heads": 4})
    assert sel.heads_of("not a dict") is None
    with pytest.raises(InputError, match="positions"):
        sel.describe_positions({"positions": list(range(500))})


def test_as_head_set_accepts_the_three_forms(tiny_llama: ModelHandle) -> None:
    want = HeadSet.parse("1.2", 2, 4)
    assert sel.as_head_set("1.2", tiny_llama) == want
    assert sel.as_head_set([(1, 2)], tiny_llama) == want
    assert sel.as_head_set(want, tiny_llama) == want
    with pytest.raises(InputError, match="heads of a 30×9 model"):
        sel.as_head_set(HeadSet.parse("1.2", 30, 9), tiny_llama)


def test_the_value_is_a_frozen_codec_dataclass_checked_when_made() -> None:
    s = sel.toggle_position(sel.toggle(sel.empty(), 9, 4, 30, 9, "smollm2-135m"), 3)
    assert isinstance(s, sel.Selection) and s.positions == (3,)
    data = s.to_json()
    assert data == {"heads": "9.4", "n_layers": 30, "n_heads": 9, "model": "smollm2-135m", "positions": [3]}
    assert sel.Selection.from_json(data) == s == sel._clean(data)
    with pytest.raises(InputError, match="out of range"):
        sel.Selection.from_json({**data, "heads": "30.0"})
    assert sel.Selection(heads="", n_layers=30, model="m") == sel.empty()  # no heads: no shape, no model
    with pytest.raises(AttributeError):
        s.heads = "1.1"  # type: ignore[misc]
