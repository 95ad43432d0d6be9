"""CircuitConfig / SAEConfig given what a user or an app event may send: strings, fractions, NaN, inf, bools —
each gives one InputError line naming the field (never a TypeError), and integral strings are read as numbers."""

from __future__ import annotations

import math

import pytest

from headscope.circuits.config import CircuitConfig
from headscope.circuits.sae import SAEConfig
from headscope.errors import InputError


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_examples": 3.5}, "n_examples"),
        ({"n_examples": "three"}, "n_examples"),
        ({"n_examples": math.nan}, "n_examples"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"gt_frac": math.inf}, "gt_frac"),
        ({"gt_frac": 1.0}, "gt_frac"),
        ({"gt_frac": "0.1x"}, "gt_frac"),
        ({"task": 3}, "task"),
        ({"task": "nope"}, "task"),
        ({"reduce": "max"}, "reduce"),
        ({"layers": (3, 1)}, "layers"),
        ({"layers": "0:2"}, "layers"),
        ({"ig_steps": 0}, "ig_steps"),
        ({"edges": "yes"}, "edges"),
        ({"n_bootstrap": 2.5}, "n_bootstrap"),
        ({"circuit_k": 2, "circuit_threshold": 1.0}, "circuit_k or circuit_threshold"),
        ({"sae": {"epochs": 3}}, "sae must be an SAEConfig"),
    ],
)
def test_bad_values_are_one_line_input_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=field) as err:
        CircuitConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_integral_strings_and_floats_are_read_as_numbers() -> None:
    cfg = CircuitConfig(n_examples="12", seed=3.0, layers=[1, "3"], sae=SAEConfig(epochs="20", l1="0.1"))  # type: ignore[arg-type]
    assert (cfg.n_examples, cfg.seed, cfg.layers, cfg.sae.epochs, cfg.sae.l1) == (12, 3, (1, 3), 20, 0.1)
    assert isinstance(cfg.n_examples, int) and isinstance(cfg.sae.epochs, int)


def test_round_trip_through_json() -> None:
    cfg = CircuitConfig(task="docstring", layers=(2, 5), edges=True, sae=SAEConfig(decoder_norm="atoms"))
    assert CircuitConfig.from_json(cfg.to_json()) == cfg
    assert CircuitConfig.from_json({**cfg.to_json(), "from_the_future": 1}) == cfg
