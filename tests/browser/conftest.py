"""One in-process app for the browser test (launched once per session)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    from headscope.app.main import demo, launch

    port = _free_port()
    launch(port=port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
