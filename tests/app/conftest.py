"""The app tests reach the one in-process app (`app_url`, tests/conftest.py) through gradio_client."""

from __future__ import annotations

import pytest
from gradio_client import Client


@pytest.fixture(scope="session")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)
