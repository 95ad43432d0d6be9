"""Shared fixtures: tiny random models for most tests, the real default model once per session for marked ones."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

from headscope.models import ModelHandle

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_llama() -> ModelHandle:
    return ModelHandle.load("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2() -> ModelHandle:
    return ModelHandle.load("tiny-gpt2", device="cpu")


@pytest.fixture(scope="session", params=["tiny-llama", "tiny-gpt2"])
def tiny(request: pytest.FixtureRequest, tiny_llama: ModelHandle, tiny_gpt2: ModelHandle) -> ModelHandle:
    return {"tiny-llama": tiny_llama, "tiny-gpt2": tiny_gpt2}[request.param]


@pytest.fixture(scope="session")
def default_model() -> ModelHandle:
    """The embedded SmolLM2-135M, from the user cache (converted from its GGUF on the first ever load)."""
    return ModelHandle.load("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh HEADSCOPE_CACHE (activation stores, the user's SAEs) for one test module, restored after it."""
    root = tmp_path_factory.mktemp("hs_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSCOPE_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models gain nothing from a second thread, and on a shared 2-core machine
    two OpenMP threads per process under contention were measured 5-100x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """One in-process app for every app and browser test (launched once per session: a second launch of the same
    demo while the first serves would not start a server)."""
    from headscope.app.main import close, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(port=port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        close()


@pytest.fixture(scope="module")
def page(app_url: str) -> Iterator[Any]:
    """The app in Debian Chromium driven by playwright (never a downloaded browser), one page per test module: its
    tests share it, in file order (tests/browser/ui.py has the helpers that drive it)."""
    from tests.browser.ui import CHROMIUM, FLAGS, SHOTS, TITLE

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian chromium is missing in CI: `make setup` should have installed it")
        pytest.skip("Debian chromium not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
            pg.set_default_timeout(120_000)
            pg.goto(app_url)
            pg.get_by_text(TITLE).first.wait_for()
            yield pg
        finally:
            browser.close()
