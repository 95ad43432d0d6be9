"""Issue 24 item 7: a session file is shared between people, so what it carries is shown as text (no link, remote
image, markup or script reaches the page), and the folders the app writes for visitors (session imports, result,
figure and vector downloads) are removed when the visitor leaves and capped in total size, oldest first."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gradio as gr
import pytest
from markdown_it import MarkdownIt

from headscope.app import downloads, session
from headscope.app.figures import Plot, json_file
from headscope.app.session import SessionParts

HOSTILE = (
    "**Result** — see [the paper](https://evil.example/phish) ![pixel](https://evil.example/t.png) "
    "<script>alert(1)</script><img src=x onerror=alert(2)> <a href='javascript:alert(3)'>x</a> "
    "https://evil.example/auto www.evil.example &lt;b&gt; [ref]: https://evil.example/ref"
)


def _html(markdown: str) -> str:
    """How a CommonMark renderer turns the text into HTML (the oracle; raw HTML passes through, as it would to the
    page's sanitiser). Bare addresses, which the page's GFM renderer links, are checked on the visible text."""
    return MarkdownIt("commonmark").render(markdown)


def _visible_text(markdown: str) -> str:
    import re

    return (
        re.sub(r"<[^>]+>", "", _html(markdown))
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
    )


def _bundle(tabs: dict) -> bytes:
    return json.dumps(
        {"format": "headscope-session", "version": 1, "model": "tiny-llama", "tabs": tabs}
    ).encode()


def test_a_hostile_session_file_is_shown_as_text_never_as_markup() -> None:
    with gr.Blocks():
        parts = SessionParts()
        note, fig = gr.Markdown(), Plot()
        parts.add("t", note=note, fig=fig)
    figure = {
        "data": [{"type": "scatter", "y": [1, 2], "name": "<a href='https://evil.example'>trace</a>"}],
        "layout": {"title": {"text": "t <img src='https://evil.example/p.png'>"},
                   "images": [{"source": "https://evil.example/track.png", "x": 0, "y": 0}]},
    }  # fmt: skip
    values = session.import_values(
        parts, session.read_bundle(_bundle({"t": {"note": HOSTILE, "fig": figure}}))
    )
    md = values[4]
    html = _html(md)
    assert "<a" not in html and "<img" not in html and "<script" not in html, html
    # what the reader sees is the file's text, character for character (zero-width spaces break the addresses)
    assert _visible_text(md).replace("\u200b", "") == _visible_text(session.as_text(HOSTILE)).replace(
        "\u200b", ""
    )
    assert "[the paper](https" in _visible_text(md).replace("\u200b", "") and "<script>" in _visible_text(md)
    assert not any(a in _visible_text(md) for a in ("https://", "javascript:", "www.")), (
        "an address would autolink"
    )
    plot = json.loads(values[5].plot)
    assert "images" not in plot["layout"]
    text = json.dumps(plot)
    assert "<a " not in text and "<img" not in text and "https://" not in text


def test_our_own_summaries_read_the_same_after_an_import() -> None:
    ours = "**smollm2-135m**, 7 tokens: mean attention entropy **1.23 bits** at λ = 0 (the model as is) — Δ +0.1 bits."
    assert _visible_text(session.as_text(ours)) == _visible_text(ours)


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(downloads, "ROOT", tmp_path / "downloads")
    return tmp_path / "downloads"


class _Req:
    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def test_files_belong_to_their_visitor_and_go_when_the_visitor_leaves(tree: Path) -> None:
    with downloads.visitor(_Req("alice")):
        a = Path(json_file({"x": 1}, "result"))
        restored = session._restore_files([{"name": "../../etc/passwd", "b64": "aGk="}], many=False)
    with downloads.visitor(_Req("bob")):
        b = Path(json_file({"x": 2}, "result"))
    assert a.is_relative_to(tree / "alice") and Path(restored).is_relative_to(tree / "alice")
    assert Path(restored).name == "passwd" and Path(restored).read_text() == "hi"
    assert b.is_relative_to(tree / "bob")
    downloads.release(_Req("alice"))
    assert not a.exists() and not Path(restored).exists() and b.exists()
    downloads.release(None)  # no visitor: nothing of anyone's is removed
    assert b.exists()


def test_the_total_is_capped_oldest_first(tree: Path) -> None:
    paths = []
    for i in range(5):
        with downloads.visitor(_Req(f"v{i % 2}")):
            p = Path(json_file({"pad": "x" * 1000}, f"r{i}"))
        os.utime(p.parent, (time.time() - 100 + i, time.time() - 100 + i))  # r0 oldest ... r4 newest
        paths.append(p)
    size = paths[0].stat().st_size
    removed = downloads.cap(limit=3 * size)
    assert sorted(removed) == sorted(p.parent for p in paths[:2])
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    assert downloads.total_bytes() == 3 * size


def test_the_app_removes_a_visitors_files_on_unload() -> None:
    from headscope.app import main

    unload = [fn for fn in main.demo.fns.values() if getattr(fn.fn, "__name__", "") == "_on_leave"]
    assert unload, "demo.unload must release the visitor's files"
    assert main.demo.delete_cache == (main.GRADIO_CACHE_S, main.GRADIO_CACHE_S)  # gradio's own copies, by age
