"""Tasks: registered generators of positive/negative prompts that adapt to the loaded tokenizer (papers.md §2.1, §3.4).

A positive example is a prompt plus the next tokens counted as right (`answers`) and wrong (`wrongs`); its
logit difference is mean(logits[answers]) − mean(logits[wrongs]) at the last position. Negatives are prompts on
which the model cannot infer the answer. Built-in tasks pair negative i with positive i token for token (so
patching can be paired); a custom task is paired only when its prompts align.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from headscope import ioi as ioi_words
from headscope.circuits import words
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.registry import Registry

MAX_CUSTOM_EXAMPLES = 512
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class Example(JsonCodec):
    prompt: str
    answers: tuple[int, ...]
    wrongs: tuple[int, ...]


@dataclass(frozen=True)
class TaskData(JsonCodec):
    name: str
    positives: tuple[Example, ...]
    negatives: tuple[str, ...]
    aligned: bool  # negatives[i] was built to align token for token with positives[i]
    seed: int
    notes: tuple[str, ...] = ()
    title: str = ""  # a custom task's own name (its `name` stays "custom": published circuits never match it)


TaskFn = Callable[[PreTrainedTokenizerBase, int, random.Random], TaskData]
TASKS: Registry[TaskFn] = Registry("circuit task")


def register_task(name: str) -> Callable[[TaskFn], TaskFn]:
    return TASKS.register(name)


def make_task(
    name: str, tokenizer: PreTrainedTokenizerBase, *, n: int, seed: int, spec: Any = None
) -> TaskData:
    """`n` positive/negative pairs of task `name` for this tokenizer (`spec`: the custom task's JSON)."""
    if name == "custom":
        if spec is None:
            raise InputError("task 'custom' needs a task file (JSON with name, positive, negative)")
        return custom_task(spec, tokenizer, seed=seed)
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of: {', '.join([*TASKS, 'custom'])}")
    data = TASKS[name](tokenizer, n, random.Random(seed))
    return TaskData(data.name, data.positives, data.negatives, data.aligned, seed, data.notes)


def next_token(tok: PreTrainedTokenizerBase, prefix: str, continuation: str) -> int | None:
    """The id of `continuation` if, after `prefix`, it is exactly one more token (tokenised in context)."""
    pre = tok(prefix, add_special_tokens=False).input_ids
    full = tok(prefix + continuation, add_special_tokens=False).input_ids
    if len(full) == len(pre) + 1 and full[: len(pre)] == pre:
        return int(full[-1])
    return None


def _n_tokens(tok: PreTrainedTokenizerBase, text: str) -> int:
    return len(tok(text, add_special_tokens=True).input_ids)


def _aligned(tok: PreTrainedTokenizerBase, a: str, b: str) -> bool:
    return _n_tokens(tok, a) == _n_tokens(tok, b)


def _collect(
    n: int, rng: random.Random, draw: Callable[[random.Random], tuple[Example, str] | None], what: str
):
    pos: list[Example] = []
    neg: list[str] = []
    for _ in range(50 * n):  # resample draws whose clean and corrupted prompts do not align
        got = draw(rng)
        if got is not None:
            pos.append(got[0])
            neg.append(got[1])
            if len(pos) == n:
                return tuple(pos), tuple(neg)
    raise InputError(f"task {what}: could not build {n} aligned prompt pairs for this tokenizer")


def _single_token_names(tok: PreTrainedTokenizerBase, names: Sequence[str], prefix: str) -> list[str]:
    return [w for w in names if next_token(tok, prefix, " " + w) is not None]


# ---- IOI ---------------------------------------------------------------------------------------------------------
def _ioi_fill(template: str, first: tuple[str, str], subject: str, place: str, obj: str) -> str:
    # [B] [A] in the first clause are replaced in order; the second [B] is the subject; the final " [A]" is dropped.
    text = template.removesuffix(" [A]").replace("[PLACE]", place).replace("[OBJECT]", obj)
    text = text.replace("[B]", "\0", 1).replace("[A]", "\1", 1)
    return text.replace("[B]", subject).replace("\0", first[0]).replace("\1", first[1])


@register_task("ioi")
def ioi(tok: PreTrainedTokenizerBase, n: int, rng: random.Random) -> TaskData:
    """BABA and ABBA templates (answer: the indirect object); negatives: three distinct names (papers.md §2.1)."""
    names = _single_token_names(tok, ioi_words.NAMES, "Then, Mary gave a ring to")
    if len(names) < 5:
        raise InputError(
            f"task ioi: only {len(names)} of {len(ioi_words.NAMES)} names are single tokens here"
        )

    def draw(r: random.Random) -> tuple[Example, str] | None:
        t = r.choice(ioi_words.BABA_TEMPLATES)
        io, s, x, y, z = r.sample(names, 5)
        place, obj = r.choice(ioi_words.PLACES), r.choice(ioi_words.OBJECTS)
        first = (s, io) if r.random() < 0.5 else (io, s)  # BABA or ABBA
        clean = _ioi_fill(t, first, s, place, obj)
        corrupt = _ioi_fill(t, (x, y), z, place, obj)
        a, w = next_token(tok, clean, " " + io), next_token(tok, clean, " " + s)
        if a is None or w is None or not _aligned(tok, clean, corrupt):
            return None
        return Example(clean, (a,), (w,)), corrupt

    pos, neg = _collect(n, rng, draw, "ioi")
    return TaskData("ioi", pos, neg, True, 0, (f"{len(names)} single-token names",))


# ---- greater-than ------------------------------------------------------------------------------------------------
def _year_tokens(tok: PreTrainedTokenizerBase, prefix: str) -> tuple[str, dict[str, int]] | None:
    two = {f"{i:02d}": next_token(tok, prefix, f"{i:02d}") for i in range(100)}
    if all(v is not None for v in two.values()):
        return "two_digit", {k: int(v) for k, v in two.items() if v is not None}
    one = {str(i): next_token(tok, prefix, str(i)) for i in range(10)}
    if all(v is not None for v in one.values()):
        return "one_digit", {k: int(v) for k, v in one.items() if v is not None}
    return None


@register_task("greater_than")
def greater_than(tok: PreTrainedTokenizerBase, n: int, rng: random.Random) -> TaskData:
    """'The {noun} lasted from the year XXYY to the year XX'; negatives use the '01' corruption (Hanna et al.).

    Right: the end-year continuations above YY; wrong: those at or below. Tokenizers that split digits (SmolLM2)
    continue with one digit, so there the answer is the tens digit: right > tens(YY), wrong < tens(YY).
    """
    found = _year_tokens(tok, "The war lasted from the year 1732 to the year 17")
    if found is None:
        raise InputError(
            "task greater_than: neither two-digit nor one-digit year endings are single tokens here"
        )
    mode, ids = found

    def draw(r: random.Random) -> tuple[Example, str] | None:
        noun, xx = r.choice(words.GT_NOUNS), r.randint(11, 17)
        yy = r.randint(2, 98) if mode == "two_digit" else r.randint(12, 87)
        head = f"The {noun} lasted from the year {xx}"
        clean, corrupt = f"{head}{yy:02d} to the year {xx}", f"{head}01 to the year {xx}"
        if mode == "two_digit":
            right = [ids[f"{i:02d}"] for i in range(yy + 1, 100)]
            wrong = [ids[f"{i:02d}"] for i in range(yy + 1)]
        else:
            right = [ids[str(d)] for d in range(yy // 10 + 1, 10)]
            wrong = [ids[str(d)] for d in range(yy // 10)]
        if not _aligned(tok, clean, corrupt):
            return None
        return Example(clean, tuple(right), tuple(wrong)), corrupt

    pos, neg = _collect(n, rng, draw, "greater_than")
    return TaskData("greater_than", pos, neg, True, 0, (f"year endings: {mode}",))


# ---- docstring ---------------------------------------------------------------------------------------------------
def _docstring(method: str, args: Sequence[str], doc_args: Sequence[str], desc: Sequence[str]) -> str:
    a1, a2, m1, m2, m3, s1 = args
    return (
        f"\ndef {method}(self, {a1}, {a2}, {m1}, {m2}, {m3}, {s1}):\n"
        f'    """{" ".join(desc[:3])}\n\n'
        f"    :param {doc_args[0]}: {desc[3]} {desc[4]}\n"
        f"    :param {doc_args[1]}: {desc[5]} {desc[6]}\n"
        f"    :param"
    )


@register_task("docstring")
def docstring(tok: PreTrainedTokenizerBase, n: int, rng: random.Random) -> TaskData:
    """Heimersheim & Janiak's prompt (3 matching args, 2 def-prefix, 1 suffix); negatives: random_random."""
    names = _single_token_names(tok, words.VAR_NAMES, "    :param")
    if len(names) < 14:
        raise InputError(f"task docstring: only {len(names)} variable names are single tokens here")

    def draw(r: random.Random) -> tuple[Example, str] | None:
        args = r.sample(names, 6)
        other = r.sample([w for w in names if w not in args], 8)  # random_random: new def and doc names
        desc = [r.choice(words.DOC_WORDS) for _ in range(7)]
        method = r.choice(words.METHOD_NAMES)
        clean = _docstring(method, args, args[2:4], desc)
        corrupt = _docstring(method, other[:6], other[6:8], desc)
        a = next_token(tok, clean, " " + args[4])
        w = [next_token(tok, clean, " " + x) for x in (args[0], args[1], args[2], args[3], args[5])]
        if a is None or any(x is None for x in w) or not _aligned(tok, clean, corrupt):
            return None
        return Example(clean, (a,), tuple(int(x) for x in w if x is not None)), corrupt

    pos, neg = _collect(n, rng, draw, "docstring")
    return TaskData("docstring", pos, neg, True, 0, (f"{len(names)} single-token variable names",))


# ---- induction ---------------------------------------------------------------------------------------------------
INDUCTION_LENGTH = 8
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def induction_units(tok: PreTrainedTokenizerBase) -> list[str]:
    """Letters where the tokenizer keeps every letter of a run a token of its own (byte-level models), else
    single-token names with a leading space."""
    if len(tok(LETTERS, add_special_tokens=False).input_ids) == len(LETTERS):
        return list(LETTERS)
    return [" " + n for n in _single_token_names(tok, ioi_words.NAMES, "Then, Mary gave a ring to")]


@register_task("induction")
def induction(tok: PreTrainedTokenizerBase, n: int, rng: random.Random) -> TaskData:
    """Repeated random tokens: A + A[:-1], the answer A[-1] (induction), wrong: A's other tokens. Negatives
    replace the first copy by fresh tokens (B + A[:-1]), so nothing can be copied; they align token for token."""
    units = induction_units(tok)
    if len(units) < 2 * INDUCTION_LENGTH:
        raise InputError(f"task induction: only {len(units)} single-token units for this tokenizer")

    def draw(r: random.Random) -> tuple[Example, str] | None:
        picked = r.sample(units, 2 * INDUCTION_LENGTH)
        a, b = picked[:INDUCTION_LENGTH], picked[INDUCTION_LENGTH:]
        clean, corrupt = "".join(a + a[:-1]), "".join(b + a[:-1])
        found = [next_token(tok, clean, u) for u in a]
        ids = [i for i in found if i is not None]
        if len(ids) < len(a) or not _aligned(tok, clean, corrupt):
            return None
        return Example(clean, (ids[-1],), tuple(ids[:-1])), corrupt

    pos, neg = _collect(n, rng, draw, "induction")
    return TaskData("induction", pos, neg, True, 0, (f"{len(units)} units, sequences of {INDUCTION_LENGTH}",))


# ---- custom ------------------------------------------------------------------------------------------------------
def _answer_id(tok: PreTrainedTokenizerBase, prompt: str, text: str, what: str, i: int) -> int:
    tid = next_token(tok, prompt, text)
    if tid is None:
        n = len(tok(text, add_special_tokens=False).input_ids)
        raise InputError(
            f"custom task: positive {i} {what} {text!r} is {n} tokens after its prompt; it must be exactly one"
        )
    return tid


def _str_field(obj: Any, key: str, where: str) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), str) or not obj[key]:
        raise InputError(f"custom task: {where} needs a non-empty string {key!r}")
    if len(obj[key]) > MAX_PROMPT_CHARS:
        raise InputError(f"custom task: {where} {key!r} is longer than {MAX_PROMPT_CHARS} characters")
    return obj[key]


def _parse_spec(spec: Any) -> dict[str, Any]:
    if isinstance(spec, bytes | str):
        try:
            spec = json.loads(spec)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"custom task: not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise InputError("custom task: expected a JSON object with name, positive, negative")
    for key in ("positive", "negative"):
        if not isinstance(spec.get(key), list) or not spec[key]:
            raise InputError(f"custom task: {key!r} must be a non-empty list")
        if len(spec[key]) > MAX_CUSTOM_EXAMPLES:
            raise InputError(f"custom task: at most {MAX_CUSTOM_EXAMPLES} {key} examples")
    return spec


def custom_task(spec: Any, tok: PreTrainedTokenizerBase, *, seed: int = 0) -> TaskData:
    """`{"name", "positive": [{"prompt", "answer", "wrong"}], "negative": [{"prompt"}]}` (dict, str or bytes)."""
    spec = _parse_spec(spec)
    pos = []
    for i, p in enumerate(spec["positive"]):
        prompt = _str_field(p, "prompt", f"positive {i}")
        answer, wrong = _str_field(p, "answer", f"positive {i}"), _str_field(p, "wrong", f"positive {i}")
        pos.append(
            Example(
                prompt,
                (_answer_id(tok, prompt, answer, "answer", i),),
                (_answer_id(tok, prompt, wrong, "wrong", i),),
            )
        )
    neg = tuple(_str_field(q, "prompt", f"negative {i}") for i, q in enumerate(spec["negative"]))
    aligned = len(neg) == len(pos) and all(_aligned(tok, p.prompt, q) for p, q in zip(pos, neg, strict=True))
    title = spec.get("name") if isinstance(spec.get("name"), str) and spec.get("name") else "custom"
    return TaskData("custom", tuple(pos), neg, aligned, seed, title=str(title)[:100])
