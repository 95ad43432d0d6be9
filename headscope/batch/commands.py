"""The CLI command equivalent to an app job, so a runner elsewhere (a Ray cluster) can run it as a batch job and
return the JSON the in-process job returns. Numbers are written with `repr`, which float() reads back exactly."""

from __future__ import annotations

from typing import Any


def _nums(values: Any) -> str:
    return ",".join(repr(float(v)) if not isinstance(v, int) else str(v) for v in values)


def locality_sweep_command(model: str, text: str, cfg: Any, max_tokens: int) -> tuple[str, ...]:
    """`headscope locality sweep ...` for a `SweepConfig` (its dial's mode, schedule, heads, weights, blocks)."""
    dial = cfg.dial
    argv = ["locality", "sweep", "--model", model, "--text", text, "--max-tokens", str(max_tokens),
            "--lambdas", _nums(cfg.lambdas), "--mode", dial.mode, "--schedule", dial.schedule,
            "--beta", repr(float(dial.beta)), "--strength", repr(float(dial.strength)),
            "--blocks", dial.blocks.source, "--block-size", str(dial.blocks.size)]  # fmt: skip
    if dial.layer_weights:
        argv += ["--layer-weights", _nums(dial.layer_weights)]
    if dial.heads is not None:
        argv += ["--heads", str(dial.heads)]  # the HeadSet grammar ("9.4, 12.*")
    if dial.blocks.spans:
        argv += ["--spans", ",".join(f"{a}:{b}" for a, b in dial.blocks.spans)]
    if cfg.target is not None:
        argv += ["--target", cfg.target]
    return tuple(argv)
