"""Security configuration of the served app: version pin, SSR off, forged Host header, no server paths."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import gradio as gr
from packaging.version import Version

from headscope.app.main import demo


def _get(app_url: str, path: str, host: str | None = None) -> tuple[int, str]:
    u = urlparse(app_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_gradio_version_outside_the_ssr_advisory_range() -> None:
    v = Version(gr.__version__)
    assert not (Version("6.27") <= v < Version("6.32")), f"gradio {v} is in the CVE-2026-134825 range"


def test_launched_with_ssr_off(app_url: str) -> None:
    assert demo.ssr_mode is False


def test_forged_host_header_gains_nothing(app_url: str) -> None:
    status_plain, body_plain = _get(app_url, "/config")
    status_forged, body_forged = _get(app_url, "/config", host="localhost")
    assert status_plain == status_forged == 200
    plain, forged = json.loads(body_plain), json.loads(body_forged)
    # The forged host sees exactly the same public config: no extra keys, no tokens, no history.
    assert set(forged) == set(plain)
    for body in (body_plain, body_forged):
        assert "hf_" not in body.lower().replace("hf_hub", "")
    assert forged.get("components") == plain.get("components")


def test_no_server_file_access(app_url: str) -> None:
    for path in (
        "/file=/etc/passwd",
        "/gradio_api/file=/etc/passwd",
        "/file=README.md",
        "/gradio_api/file=pyproject.toml",
    ):
        status, body = _get(app_url, path)
        assert status in (403, 404, 400), (path, status)
        assert "root:" not in body
