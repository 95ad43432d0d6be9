"""The one JSON codec for frozen result dataclasses: exact round trips, checked input, readable errors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest

from headscope.codec import JsonCodec, decode, encode, jfield
from headscope.errors import InputError


@dataclass(frozen=True)
class Point(JsonCodec):
    x: float
    label: str = ""


@dataclass(frozen=True)
class Run(JsonCodec):
    name: str
    kind: Literal["a", "b"]
    points: tuple[Point, ...]
    by_name: dict[str, float]
    seed: int | None = None
    pair: tuple[int, str] = (0, "")
    shown: float = jfield(name="shown_value", digits=2, default=0.0)
    cache: object = jfield(skip=True, default=None, compare=False)
    tags: list[str] = field(default_factory=list)

    json_extra = ("n_points",)

    @property
    def n_points(self) -> int:
        return len(self.points)


def _run(**kw) -> Run:
    base = dict(name="r", kind="a", points=(Point(1.5, "p"), Point(-2.0)), by_name={"u": 0.25}, seed=3)
    return Run(**{**base, **kw})


def test_round_trip_through_json_text_is_exact():
    run = _run(pair=(4, "x"), tags=["t"])
    data = json.loads(json.dumps(run.to_json(), allow_nan=False))
    assert data["n_points"] == 2 and "cache" not in data and data["shown_value"] == 0.0
    assert Run.from_json(data) == run


def test_digits_round_only_on_output_and_nan_becomes_null():
    data = _run(shown=1.23456, by_name={"u": math.nan}).to_json()
    assert data["shown_value"] == 1.23 and data["by_name"]["u"] is None
    back = Run.from_json(data)
    assert back.shown == 1.23 and math.isnan(back.by_name["u"])


def test_numpy_and_tensor_like_values_become_plain_numbers():
    out = encode({"a": np.arange(3, dtype=np.int64), "b": np.float32(0.5), "c": np.array([[1.0, np.inf]])})
    assert out == {"a": [0, 1, 2], "b": 0.5, "c": [[1.0, None]]}
    json.dumps(out, allow_nan=False)
    arr = decode(np.ndarray, [[1, None]])
    assert arr.shape == (1, 2) and math.isnan(arr[0, 1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("name"), "Run is missing 'name'"),
        (lambda d: d.update(extra=1), "unknown field(s): extra"),
        (lambda d: d.update(kind="c"), "Run.kind must be one of 'a', 'b'"),
        (lambda d: d["points"][1].update(x="high"), "Run.points[1].x must be a float"),
        (lambda d: d.update(seed=True), "Run.seed"),
        (lambda d: d.update(pair=[1]), "Run.pair must have 2 items"),
        (lambda d: d.update(by_name=[1]), "Run.by_name must be an object"),
    ],
)
def test_malformed_input_gives_one_line_naming_the_path(change, message):
    data = _run().to_json()
    change(data)
    with pytest.raises(InputError) as err:
        Run.from_json(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_post_init_checks_run_on_read():
    @dataclass(frozen=True)
    class Checked(JsonCodec):
        n: int

        def __post_init__(self):
            if self.n < 0:
                raise ValueError("n must be ≥ 0")

    assert Checked.from_json({"n": 2.0}) == Checked(2)
    with pytest.raises(InputError, match="Checked: n must be ≥ 0"):
        Checked.from_json({"n": -1})


def test_skipped_field_needs_a_default():
    with pytest.raises(TypeError):
        jfield(skip=True)


@dataclass(frozen=True)
class Inner(JsonCodec):
    a: int = 0
    json_ignore_unknown = True


@dataclass(frozen=True)
class Outer(JsonCodec):
    inner: Inner = field(default_factory=Inner)
    json_ignore_unknown = True


def test_ignore_unknown_keys_where_the_class_asks_for_it():
    assert Outer.from_json({"inner": {"a": 2, "newer": 1}, "older": "x"}) == Outer(Inner(2))
    with pytest.raises(InputError, match="unknown field"):
        Point.from_json({"x": 1.0, "older": 1})
