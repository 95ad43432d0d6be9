"""app/ is wiring and views only (issue 21 item 1): no tensor, array or hook code in headscope/app/*.py. A tab
draws from a capability's typed result (`Result.from_json(payload)`); the maths lives in the capability.

Read as text, not imported: an `import torch` inside a function is as much a violation as one at the top. A file
fails with every offending `file:line`. Nothing is allowed by exception: `models.memory` holds the one torch call
the app needs (freeing the GPU cache after an out-of-memory error), and a typed result's arrays reach the views as
nested lists through `.tolist()`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "headscope" / "app"
FORBIDDEN = re.compile(
    r"\bimport torch\b|\bfrom torch\b|\btorch\.|\bnumpy\b|\bnp\.|\.run_with_hooks\b|\brun_with_cache\b"
    r"|hooks\(|\bhook_|\.forward\(|register_forward_hook"
)


def offending_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [f"{path.name}:{i}: {line.strip()}" for i, line in enumerate(lines, 1) if FORBIDDEN.search(line)]


def test_the_pattern_finds_what_it_is_for() -> None:
    bad = ["import torch", "import numpy as np", "x = np.stack(a)", "handle.run_with_hooks(t)", "with handle.hooks(",
           "cache['blocks.0.attn.hook_pattern']", "torch.cuda.empty_cache()", "_, c = h.run_with_cache(t, names)"]  # fmt: skip
    good = ["from headscope.probes.view import EntropyView", "values = result.grid.tolist()", "x = npx + 1"]
    assert all(FORBIDDEN.search(b) for b in bad) and not any(FORBIDDEN.search(g) for g in good)


@pytest.mark.parametrize("path", sorted(APP.glob("*.py")), ids=lambda p: p.name)
def test_no_tensor_or_hook_code_in_app(path: Path) -> None:
    found = offending_lines(path)
    assert not found, "tensor / array / hook code in app/ (move it into the capability):\n" + "\n".join(found)
