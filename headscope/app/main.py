"""The Gradio app: `demo` is built on import (no model loaded, nothing launched); `serve` loads and launches."""

from __future__ import annotations

import importlib
import logging

import gradio as gr

from headscope.app.registry import TABS, AppContext
from headscope.app.state import STORE
from headscope.models import CATALOG, DEFAULT_MODEL

# Tab modules register themselves on import; a new tab adds its module here (one line).
TAB_MODULES: tuple[str, ...] = (
    "headscope.app.model_tab",
    "headscope.app.locality_tab",
    "headscope.app.localist_tab",
    "headscope.app.decoding_tab",
    "headscope.app.steering_tab",
    "headscope.app.circuits_tab",
)
for _module in TAB_MODULES:
    importlib.import_module(_module)

QUEUE_MAX_SIZE = 64  # beyond this, callers are told the app is busy instead of piling up
TITLE = "headscope — interpretability workbench"


def build_demo() -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}")
        model = gr.Dropdown(choices=list(CATALOG), value=DEFAULT_MODEL, label="Model", interactive=True)
        ctx = AppContext(model=model)
        with gr.Tabs():
            for spec in sorted(TABS.values(), key=lambda s: s.order):
                with gr.Tab(spec.title):
                    spec.build(ctx)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    return demo


demo = build_demo()


def serve(model: str = DEFAULT_MODEL, port: int = 7860, host: str = "127.0.0.1") -> None:
    logging.basicConfig(level=logging.INFO)
    STORE.get(model)  # load before the first visitor, so the app opens ready
    # SSR off: gradio 6.27-6.31 with SSR expose run history to a forged Host header; we pin below that anyway.
    launch(host=host, port=port, block=True)


def launch(host: str = "127.0.0.1", port: int = 7860, *, block: bool = False) -> None:
    """Launch the shared demo with the project's security settings (also used by the tests, non-blocking)."""
    demo.launch(
        server_name=host,
        server_port=port,
        ssr_mode=False,
        show_error=True,
        run_history=False,
        max_file_size="2mb",
        prevent_thread_lock=not block,
        quiet=not block,
    )
