"""Tabs register themselves here; `main.build_demo` lays them out in order. One module per tab."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from headscope.registry import Registry

if TYPE_CHECKING:
    from headscope.app.selection_bar import SelectionBar
    from headscope.app.session import SessionParts


@dataclass(frozen=True)
class AppContext:
    """What every tab may wire to: the shared model picker, the shared selection bar (`selection_bar.py`) and the
    session-file registry (`session.py`)."""

    model: gr.Dropdown
    selection: SelectionBar
    session: SessionParts


Build = Callable[[AppContext], None]  # a tab's build function: lays out its components and wires them


@dataclass(frozen=True)
class TabSpec:
    title: str
    order: int
    build: Build


TABS: Registry[TabSpec] = Registry("tab")


def register_tab(title: str, order: int) -> Callable[[Build], Build]:
    """Register the decorated build function as the tab `title` (`main.build_demo` lays tabs out by order)."""

    def deco(build: Build) -> Build:
        TABS.add(title, TabSpec(title, order, build))
        return build

    return deco
