"""Argument writers beside their parsers: for every CLI module that exports `to_argv`, each config it can write
parses back to itself, `config_from_argv(to_argv(c)) == c`, over generated configs (seeded, derandomized).

The contract (headscope/cli/README.md): a module in `headscope.cli.CAPABILITY_COMMANDS` that exports `to_argv`
also exports `config_from_argv(argv)` and `ARGV_CONFIGS` ("module:Class" of each config type `to_argv` takes), and
tests/unit/argv_strategies.py has a strategy for each of those types. Nothing to register: this file finds them.
"""

from __future__ import annotations

import importlib

import pytest
from argv_strategies import STRATEGIES
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from headscope.cli import CAPABILITY_COMMANDS

ROUND_TRIP = settings(
    max_examples=60, derandomize=True, deadline=None, database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows its argv at once, not minutes later
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip


def _writers() -> list[tuple[str, str]]:
    pairs = []
    for name in CAPABILITY_COMMANDS:
        module = importlib.import_module(name)
        if hasattr(module, "to_argv"):
            configs = getattr(module, "ARGV_CONFIGS", None)
            assert configs, f"{name} exports to_argv but no ARGV_CONFIGS (the config types it writes)"
            assert callable(getattr(module, "config_from_argv", None)), (
                f"{name}: to_argv without config_from_argv"
            )
            pairs += [(name, c) for c in configs]
    return pairs


WRITERS = _writers()


def _config_type(path: str) -> type:
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)


def test_the_harness_finds_the_writers() -> None:
    found = {m for m, _ in WRITERS}
    assert {"headscope.cli.probes", "headscope.cli.localist"} <= found
    missing = [c for _, c in WRITERS if c not in STRATEGIES]
    assert not missing, f"add a strategy to tests/unit/argv_strategies.py for: {missing}"


@pytest.mark.parametrize(
    ("module", "config"), WRITERS, ids=[f"{m.rsplit('.', 1)[1]}:{c}" for m, c in WRITERS]
)
@ROUND_TRIP
@given(data=st.data())
def test_config_from_argv_inverts_to_argv(module: str, config: str, data: st.DataObject) -> None:
    cli = importlib.import_module(module)
    cfg = data.draw(STRATEGIES[config](), label=config)
    assert isinstance(cfg, _config_type(config))
    argv = cli.to_argv(cfg)
    assert all(isinstance(a, str) for a in argv)
    assert cli.config_from_argv(argv) == cfg, argv


@pytest.mark.parametrize("text", ["-starts with a dash", "--json", "a=b, c", "line\nbreak", ""])
def test_free_text_stays_a_value(text: str) -> None:
    from headscope.cli import build_parser
    from headscope.cli.probes import to_argv
    from headscope.probes.report import EntropyConfig
    from headscope.probes.sweep import SweepConfig

    for cfg in (EntropyConfig(), SweepConfig()):
        args = build_parser().parse_args(to_argv(cfg, model="tiny-llama", text=text))
        assert (args.text, args.model, args.json) == (text, "tiny-llama", False)


def test_a_config_the_options_cannot_express_is_refused() -> None:
    from dataclasses import replace

    from headscope.cli.localist import to_argv
    from headscope.errors import InputError
    from headscope.localist.training import TrainConfig

    with pytest.raises(InputError, match=r"cannot express this config \(fields: lr\)"):
        to_argv(replace(TrainConfig(), lr=0.01))
