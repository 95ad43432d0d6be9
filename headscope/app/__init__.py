"""Gradio UI: one module per tab, wiring only (see README.md). Import `headscope.app.main.demo` for the Blocks."""
