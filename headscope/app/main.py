"""The Gradio app: `demo` is built on import (no model loaded, nothing launched); `serve` loads and launches."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
from pathlib import Path

import gradio as gr

from headscope.app import downloads, gpu, jobs
from headscope.app.figures import reveal_when_set
from headscope.app.selection_bar import SelectionBar
from headscope.app.session import SessionControls, SessionParts
from headscope.app.state import STORE
from headscope.app.tabs import TABS, AppContext
from headscope.models import CATALOG, DEFAULT_MODEL

# Every `*_tab.py` here registers its tab on import (`tabs.register_tab`): a new tab is one new module.
TAB_MODULES = tuple(
    f"{__package__}.{m.name}"
    for m in pkgutil.iter_modules([str(Path(__file__).parent)])
    if m.name.endswith("_tab")
)
for _module in TAB_MODULES:
    importlib.import_module(_module)

session_parts = SessionParts()  # what the last built demo keeps in a session file (tests, tools)
QUEUE_MAX_SIZE = 64  # beyond this, callers are told the app is busy instead of piling up
TITLE = "headscope — interpretability workbench"
# A job's status line: gradio marks the progress target of an event that ended in an error (a refusal, a Cancel)
# with a red "Error" badge that stays. The toast already says what happened — "Cancelled" in grey for a Cancel,
# the refusal's one line otherwise — and the Cancel button's handler writes the line itself.
APP_CSS = ".hs-job-status .error { display: none !important; }"


GRADIO_CACHE_S = 3600  # gradio's own copies of served files: checked and removed after an hour


def _on_leave(request: gr.Request) -> None:
    """A visitor who closes the page leaves no job running for nobody, and none of their files on disk."""
    jobs.BOARD.cancel(jobs.owner_of(request))
    downloads.release(request)


def build_demo() -> gr.Blocks:
    global session_parts
    with gr.Blocks(
        title=TITLE, analytics_enabled=False, delete_cache=(GRADIO_CACHE_S, GRADIO_CACHE_S)
    ) as demo:
        gr.Markdown(f"# {TITLE}")
        with gr.Row():
            model = gr.Dropdown(
                choices=list(CATALOG), value=DEFAULT_MODEL, label="Model", interactive=True, scale=3
            )
            session_ui = SessionControls.build()
        ctx = AppContext(model=model, selection=SelectionBar.build(model), session=SessionParts())
        with gr.Tabs():
            for spec in sorted(TABS.values(), key=lambda s: s.order):
                with gr.Tab(spec.title, id=spec.title):
                    spec.build(ctx)
        session_ui.wire(ctx.session, model, ctx.selection)
        session_parts = ctx.session
        demo.unload(_on_leave)
        reveal_when_set(demo)
    gpu.wrap_events(demo)  # ZeroGPU: model work under spaces.GPU with its event's duration (no-op elsewhere)
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
        max_file_size="16mb",
        css=APP_CSS,  # session files carry figures and reports; each reader checks its own limit
        prevent_thread_lock=not block,
        quiet=not block,
    )


async def _set(event: asyncio.Event) -> None:
    event.set()


def close() -> None:
    """Stop the server `launch` started. gradio's `Blocks.close` sets the server's asyncio stop event from the
    calling thread, while a heartbeat stream ending on the server's loop can remove its waiter from that event
    mid-set (`RuntimeError: deque mutated during iteration`, seen once at the end of a CI test session, which left
    the server running). The event is set on its own loop first, which makes gradio's set a no-op."""
    event = getattr(getattr(demo, "app", None), "stop_event", None)
    loop = getattr(event, "_loop", None)  # bound by the first stream that waited on it; none waited: no race
    if isinstance(event, asyncio.Event) and isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running():
        with contextlib.suppress(TimeoutError):  # a loop that does not answer in 10 s: close anyway
            asyncio.run_coroutine_threadsafe(_set(event), loop).result(timeout=10)
    demo.close()
