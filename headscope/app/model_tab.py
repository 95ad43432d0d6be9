"""Model tab: pick a catalog model, load it (with progress), show its facts."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app import examples
from headscope.app.figures import table
from headscope.app.state import STORE, VIEW_EVENT
from headscope.app.tabs import AppContext, register_tab
from headscope.app.wiring import Ctx, section
from headscope.models import CATALOG, resolve

FACT_ROWS = (
    ("architecture", "architecture"), ("n_layers", "layers"), ("n_heads", "attention heads per layer"),
    ("n_kv_heads", "key/value heads (GQA)"), ("d_model", "residual width d_model"), ("d_head", "head width d_head"),
    ("d_vocab", "vocabulary"), ("n_ctx", "context length (tokens)"), ("n_params", "parameters"),
)  # fmt: skip


def model_info(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Load (or reuse) a catalog model; `raw` = its identity and architecture facts (`headscope info`'s JSON)."""
    name = str(inputs["model"])
    resolve(name, allow_external=False)  # unknown names fail before any work
    say = ctx.progress or (lambda *a, **k: None)
    say(0.1, desc=f"loading {name} (first load of a GGUF model converts it: ~20 s)")
    info = STORE.get(name).info()
    say(1.0, desc="ready")
    return {"raw": info}


def facts_views(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The summary line and the facts table, drawn from the JSON `model_info` returned."""
    return {"summary": facts_markdown(inputs["raw"]), "facts": facts_table(inputs["raw"])}


def facts_markdown(info: dict[str, Any]) -> str:
    f, ident = info["facts"], info["identity"]
    return (
        f"**{ident['name']}** — {f['architecture']}, {f['n_layers']} layers × {f['n_heads']} heads "
        f"({f['n_kv_heads']} KV heads), d_model {f['d_model']}, d_head {f['d_head']}, "
        f"{f['n_params'] / 1e6:.1f} M parameters, on {info['device']} ({info['dtype']}); "
        f"loaded in {info['load_seconds']} s{' from cache' if info['loaded_from_cache'] else ''}. "
        f"Texts up to {info['max_tokens']} tokens."
    )


def facts_table(info: dict[str, Any]) -> dict[str, Any]:
    f, ident = info["facts"], info["identity"]
    rows = [
        {"fact": label, "value": f"{f[k]:,}" if isinstance(f[k], int) else str(f[k])}
        for k, label in FACT_ROWS
    ]
    rows += [
        {"fact": "source", "value": str(ident["source"])},
        {"fact": "revision / sha256", "value": str(ident.get("revision") or ident.get("sha256") or "n/a")},
        {"fact": "licence", "value": str(ident["license"])},
        {"fact": "BOS prepended by the tokenizer", "value": "yes" if info["prepends_bos"] else "no"},
    ]
    return table(rows, [("fact", "fact"), ("value", "value")])


def catalog_table() -> dict[str, Any]:
    rows = [
        {"name": n, "kind": e.kind, "description": e.description, "license": e.license}
        for n, e in CATALOG.items()
    ]
    return table(
        rows, [("name", "name"), ("kind", "source"), ("description", "description"), ("license", "licence")]
    )


@register_tab("Model", order=0)
def build(app: AppContext) -> None:
    examples.guide(
        "Pick a model from the catalog (the picker above); every tab runs on it.",
        "Loading shows its shape — layers × heads is the grid every layer × head view uses, and the range "
        "the head selection (L.H) is checked against.",
    )
    gr.Dataframe(
        value=catalog_table(), label="Catalog", interactive=False, wrap=True,
        column_widths=["16%", "12%", "52%", "20%"],
    )  # fmt: skip
    load = gr.Button("Load model", variant="primary")
    summary = gr.Markdown()
    facts = gr.Dataframe(label="Model facts", interactive=False)
    with gr.Accordion("Model facts: raw JSON", open=False):
        raw = gr.JSON(label="Model facts (raw)")
    section(load.click, model_info, facts_views, inputs={"model": app.model}, outputs={"raw": raw},
            views={"summary": summary, "facts": facts}, api_name="model_info", **VIEW_EVENT)  # fmt: skip
    app.session.add("model", summary=summary, facts=facts, raw=raw)
