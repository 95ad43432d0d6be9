from __future__ import annotations

import pytest

from headscope.app.inputs import integer, number
from headscope.errors import InputError


@pytest.mark.parametrize("bad", ["x", None, float("nan"), float("inf"), -float("inf"), -1, 11])
def test_number_refuses_with_one_line(bad: object) -> None:
    with pytest.raises(InputError, match="lam") as err:
        number(bad, "lam", 0, 10)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["x", float("nan"), float("inf"), 2.5, 0, 11])
def test_integer_refuses_infinity_and_fractions_cleanly(bad: object) -> None:
    with pytest.raises(InputError, match="steps"):
        integer(bad, "steps", 1, 10)


def test_accepted_values() -> None:
    assert number("0.5", "lam", 0, 1) == 0.5
    assert integer(3.0, "steps", 1, 10) == 3 and isinstance(integer(3.0, "steps", 1, 10), int)
