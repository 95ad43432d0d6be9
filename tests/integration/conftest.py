"""The one local Ray cluster of a test session, shared by every Ray module (each actor is a fresh process that
imports torch: minutes on a 2-core machine, so modules share actors where they can).

`num_cpus` here is Ray's scheduling budget, not the machine's cores: every tab's job runs on a detached named
actor per model that holds one CPU slot for reuse (as the app's cluster runner keeps it), and the batch tests add
their own workers. With the 2 slots of the real machine, three modules on three models left the fourth module's
actor pending forever (its test hit the 900 s timeout in the full suite, and passed alone)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

RAY_SLOTS = 8


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    from headscope.batch import connect

    if ray.is_initialized():
        yield
        return
    connect("local", num_cpus=RAY_SLOTS, namespace="headscope")
    try:
        yield
    finally:
        ray.shutdown()
