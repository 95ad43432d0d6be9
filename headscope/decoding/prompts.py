"""The shipped prompt sets (assets/prompts/*.json) and how a prompt becomes model text.

- `input_grounded` / `open_ended`: the lab's two original sets (instruction + optional passage);
- `categories.json`: the category benchmark — summarization, rag (a passage then a question), qa (no source),
  translation, multi_turn (a whole conversation), math_reasoning, code_edit. Passages are taken by title from the
  shipped excerpt of the offline Wikipedia corpus (`headscope.data.excerpt_articles`), so the set is the same on
  every machine.
Every prompt is rendered through the model's chat template where its tokenizer has one (instruct models answer
in it); `render_messages` takes a conversation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from headscope import assets
from headscope.data import excerpt_articles
from headscope.errors import InputError
from headscope.models import ModelHandle

PROMPT_SETS = ("input_grounded", "open_ended")
CATEGORIES = ("summarization", "rag", "qa", "translation", "multi_turn", "math_reasoning", "code_edit")
Message = dict[str, str]


@dataclass(frozen=True)
class PromptItem:
    id: str
    task: str
    instruction: str
    passage: str | None

    @property
    def user_text(self) -> str:
        return self.instruction if self.passage is None else f"{self.instruction}\n\n{self.passage}"


@dataclass(frozen=True)
class CategoryPrompt:
    id: str
    category: str
    messages: tuple[Message, ...]  # the conversation up to the turn the model answers


@functools.cache
def load_prompt_set(name: str) -> tuple[PromptItem, ...]:
    if name not in PROMPT_SETS:
        raise InputError(f"unknown prompt set {name!r}; known: {', '.join(PROMPT_SETS)}")
    raw = assets.read_json("prompts", f"{name}.json")
    return tuple(PromptItem(p["id"], p["task"], p["instruction"], p["passage"]) for p in raw["prompts"])


def _passage(title: str) -> str:
    for article in excerpt_articles():
        if article.title == title:
            return article.text
    raise InputError(f"no article titled {title!r} in the shipped excerpt")


def _user_text(category: str, item: dict) -> str:
    if category == "summarization":
        return f"{item['instruction']}\n\n{_passage(item['source_title'])}"
    if category == "rag":
        return f"Passage:\n{_passage(item['source_title'])}\n\nAnswer from the passage: {item['question']}"
    if category in ("qa", "math_reasoning"):
        return item["question"]
    if category == "translation":
        return f"{item['instruction']}\n\n{item['text']}"
    if category == "code_edit":
        return f"{item['instruction']}\n\n```python\n{item['code']}```"
    raise InputError(f"unknown category {category!r}")


@functools.cache
def load_categories() -> dict[str, tuple[CategoryPrompt, ...]]:
    """Every category of the benchmark, in `CATEGORIES` order."""
    raw = assets.read_json("prompts", "categories.json")["categories"]
    out: dict[str, tuple[CategoryPrompt, ...]] = {}
    for category in CATEGORIES:
        items = []
        for item in raw[category]:
            if category == "multi_turn":
                messages = tuple({"role": m["role"], "content": m["content"]} for m in item["messages"])
            else:
                messages = ({"role": "user", "content": _user_text(category, item)},)
            items.append(CategoryPrompt(item["id"], category, messages))
        out[category] = tuple(items)
    return out


def render_messages(handle: ModelHandle, messages: tuple[Message, ...] | list[Message]) -> str:
    """A conversation in the model's chat format, ready for the assistant's next turn (plain text without one)."""
    tok = handle.tokenizer
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return str(text)
    return "\n\n".join(m["content"] for m in messages)


def render(handle: ModelHandle, user_text: str, *, chat: bool = True) -> str:
    """The model's chat format where its tokenizer has one (instruct models answer in it), else the text."""
    if chat:
        return render_messages(handle, [{"role": "user", "content": user_text}])
    return user_text
