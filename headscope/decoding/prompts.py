"""The two shipped prompt sets (assets/prompts/*.json) and how a prompt becomes model text."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from headscope import assets
from headscope.errors import InputError
from headscope.models import ModelHandle

PROMPT_SETS = ("input_grounded", "open_ended")


@dataclass(frozen=True)
class PromptItem:
    id: str
    task: str
    instruction: str
    passage: str | None

    @property
    def user_text(self) -> str:
        return self.instruction if self.passage is None else f"{self.instruction}\n\n{self.passage}"


@functools.cache
def load_prompt_set(name: str) -> tuple[PromptItem, ...]:
    if name not in PROMPT_SETS:
        raise InputError(f"unknown prompt set {name!r}; known: {', '.join(PROMPT_SETS)}")
    raw = assets.read_json("prompts", f"{name}.json")
    return tuple(PromptItem(p["id"], p["task"], p["instruction"], p["passage"]) for p in raw["prompts"])


def render(handle: ModelHandle, user_text: str, *, chat: bool = True) -> str:
    """The model's chat format where its tokenizer has one (instruct models answer in it), else the text."""
    tok = handle.tokenizer
    if chat and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )
        return str(text)
    return user_text
