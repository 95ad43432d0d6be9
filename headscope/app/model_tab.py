"""Model tab: pick a catalog model, load it (with progress), show its facts."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.models import CATALOG, resolve


@user_errors
def model_info(name: str, progress: gr.Progress = gr.Progress()) -> dict[str, Any]:  # noqa: B008
    """Load (or reuse) a catalog model and return its identity and architecture facts."""
    resolve(str(name), allow_external=False)  # unknown names fail before any work
    progress(0.1, desc=f"loading {name} (first load of a GGUF model converts it: ~20 s)")
    info = STORE.get(str(name)).info()
    progress(1.0, desc="ready")
    return info


def _facts_markdown(info: dict[str, Any]) -> str:
    f, ident = info["facts"], info["identity"]
    return (
        f"**{ident['name']}** — {f['architecture']}, {f['n_layers']} layers × {f['n_heads']} heads "
        f"({f['n_kv_heads']} KV heads), d_model {f['d_model']}, d_head {f['d_head']}, "
        f"{f['n_params'] / 1e6:.1f} M parameters, on {info['device']} ({info['dtype']}); "
        f"loaded in {info['load_seconds']} s{' from cache' if info['loaded_from_cache'] else ''}."
    )


@register_tab("Model", order=0)
def build(ctx: AppContext) -> None:
    gr.Markdown("Pick a model from the catalog. Every other tab runs on the model chosen here.")
    gr.JSON(value={n: e.description for n, e in CATALOG.items()}, label="Catalog")
    load = gr.Button("Load model", variant="primary")
    summary = gr.Markdown()
    facts = gr.JSON(label="Model facts")
    load.click(
        model_info, inputs=[ctx.model], outputs=[facts], api_name="model_info",
        concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    ).success(_facts_markdown, inputs=[facts], outputs=[summary], api_visibility="private", queue=False)  # fmt: skip
