"""Text an SAE is judged on, as model sequences: any texts, and the two held-out sets shipped for every SAE.

- `wiki-test`: the offline Wikipedia summaries' test split (the localist split by title hash: never trained on,
  never indexed), packed into `ctx`-token windows exactly as collect.py packs the train split;
- `chat`: another domain — every shipped prompt that quotes no Wikipedia passage (assets/prompts: `open_ended`,
  and the categories qa, translation, multi_turn, math_reasoning, code_edit; the prompts with passages are left
  out because their passages are train-split articles), each followed by SmolLM2-135M-Instruct's own greedy
  answer (at most 128 tokens). Stored as conversations in `assets/saes/heldout_chat.json` and rendered through
  the model's chat template, so each conversation is one sequence starting at position 0 (instructions,
  dialogue, code, arithmetic, French and Spanish: nothing like an encyclopaedia). Rebuilt by
  `python -m headscope.features.heldout` (greedy: the same file on every machine with the same model file).

A text longer than `ctx` tokens is cut into sequences of `ctx` tokens, each with its own position 0 (which the
evaluation never counts); sequences are right-padded into one tensor with their lengths beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from headscope import assets
from headscope.errors import InputError
from headscope.features import collect
from headscope.models.handle import ModelHandle

SETS: tuple[str, ...] = ("wiki-test", "chat")
CHAT_FILE = "heldout_chat.json"
CHAT_CATEGORIES = ("qa", "translation", "multi_turn", "math_reasoning", "code_edit")
MAX_TEXT_CHARS = 8_000_000  # refuse before tokenising more than this


@dataclass(frozen=True)
class Sequences:
    tokens: Int[Tensor, "seq pos"]  # right-padded with the separator token
    lengths: tuple[int, ...]
    source: str
    truncated: bool  # the texts held more than max_tokens tokens; the sequences past it are left out

    @property
    def n_tokens(self) -> int:
        return sum(self.lengths)


def _pad(rows: Sequence[list[int]], pad: int) -> Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def of_texts(
    handle: ModelHandle, texts: Sequence[str], ctx: int, max_tokens: int, source: str = "text"
) -> Sequences:
    """Texts as sequences of at most `ctx` tokens (the tokenizer's own special tokens kept), up to `max_tokens`."""
    if not texts or not any(isinstance(t, str) and t.strip() for t in texts):
        raise InputError("no text to evaluate")
    if sum(len(t) for t in texts) > MAX_TEXT_CHARS:
        raise InputError(f"the text is longer than {MAX_TEXT_CHARS:,} characters")
    rows: list[list[int]] = []
    total, truncated = 0, False
    for text in (t for t in texts if t.strip()):
        ids = handle.tokenizer(text, add_special_tokens=True).input_ids
        for lo in range(0, len(ids), ctx):
            chunk = ids[lo : lo + ctx]
            if len(chunk) < 2:
                continue  # a lone token has no counted position
            if total + len(chunk) > max_tokens:
                truncated = True
                break
            rows.append(chunk)
            total += len(chunk)
        if truncated:
            break
    if not rows:
        raise InputError("the text gives no sequence of at least 2 tokens (position 0 is never counted)")
    return Sequences(_pad(rows, collect.separator_id(handle)), tuple(len(r) for r in rows), source, truncated)


def wiki_test(handle: ModelHandle, ctx: int, max_tokens: int, corpus: collect.Corpus = "wiki") -> Sequences:
    """The first windows of the test split (all of them when `max_tokens` covers it)."""
    want = max(1, max_tokens // ctx)
    windows = collect.split_windows(handle, "test", ctx, max_windows=want + 1, corpus=corpus)
    truncated = windows.shape[0] > want
    windows = windows[:want]
    return Sequences(windows, (ctx,) * windows.shape[0], "wiki-test", truncated)


def chat_conversations() -> list[list[dict[str, str]]]:
    raw = assets.read_json("saes", CHAT_FILE)
    return [list(c["messages"]) for c in raw["conversations"]]


def render(handle: ModelHandle, messages: Sequence[dict[str, str]]) -> str:
    """A whole conversation (answer included) in the model's chat format; plain turns without one (the same
    rendering as the "chat" training windows, collect.py)."""
    return collect.render_conversation(handle, messages)


def chat(handle: ModelHandle, ctx: int, max_tokens: int) -> Sequences:
    texts = [render(handle, m) for m in chat_conversations()]
    return of_texts(handle, texts, ctx, max_tokens, "chat")


def load(handle: ModelHandle, name: str, ctx: int, max_tokens: int, corpus: str = "wiki") -> Sequences:
    """A shipped held-out set (`corpus` "excerpt": the shipped excerpt's test split stands in for Wikipedia's)."""
    if name not in SETS:
        raise InputError(f"held-out set must be one of {', '.join(SETS)}, got {name!r}")
    if name == "chat":
        return chat(handle, ctx, max_tokens)
    return wiki_test(handle, ctx, max_tokens, corpus)  # type: ignore[arg-type]


def read_texts(raw: str, jsonl: bool) -> list[str]:
    """A file's texts: one per line of a .jsonl file ({"text": ...} or a JSON string), else the whole file."""
    if not jsonl:
        return [raw]
    texts = []
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item: Any = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"line {i} of the .jsonl file is not JSON") from None
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise InputError(
                f'line {i} of the .jsonl file is neither a string nor an object with a "text" string'
            )
        texts.append(text)
    return texts


# -- building the chat set (once, shipped) ----------------------------------------------------------------------
def _prompts() -> list[list[dict[str, str]]]:
    from headscope.decoding.prompts import load_categories, load_prompt_set

    convs = [[{"role": "user", "content": p.user_text}] for p in load_prompt_set("open_ended")]
    cats = load_categories()
    for category in CHAT_CATEGORIES:
        convs += [[dict(m) for m in item.messages] for item in cats[category]]
    return convs


def build_chat(handle: ModelHandle, max_new_tokens: int = 128) -> dict[str, Any]:
    """The chat set: each prompt answered greedily by `handle.greedy` (full recompute per step: exact; Hugging
    Face `generate` with its KV cache produced "-----" after the first token on the converted SmolLM2)."""
    tok = handle.tokenizer
    out = []
    for messages in _prompts():
        prompt = str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        ids = torch.tensor([tok(prompt, add_special_tokens=False).input_ids], device=handle.device)
        with torch.no_grad():
            answer_ids = handle.greedy(ids, max_new_tokens)
        answer = tok.decode(answer_ids, skip_special_tokens=True).strip()
        out.append({"messages": [*messages, {"role": "assistant", "content": answer}]})
    return {
        "name": "chat", "model": handle.identity.name,
        "description": "Every shipped prompt without a Wikipedia passage, answered greedily by the model "
        f"(at most {max_new_tokens} new tokens); a held-out domain for the shipped SAEs.",
        "license": "prompts Apache-2.0 (this project); answers generated by SmolLM2-135M-Instruct (Apache-2.0)",
        "conversations": out,
    }  # fmt: skip


def main() -> None:
    from headscope.models import DEFAULT_MODEL

    torch.set_num_threads(1)
    handle = ModelHandle.load(DEFAULT_MODEL, device="cpu")
    data = build_chat(handle)
    path = assets.path("saes") / CHAT_FILE
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{path}: {len(data['conversations'])} conversations")


if __name__ == "__main__":
    main()
