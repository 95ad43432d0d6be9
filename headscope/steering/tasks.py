"""(prompt, target) pair tasks for LoFiT: built-in tasks (registered by name, shipped in assets/steering) and user JSONL;
and contrast sets (positive / negative texts plus prompts) for contrastive vectors.

A built-in task file is JSON: {"name", "description", "license", "train": [...], "heldout": [...]} with each item
{"prompt", "target"}. A user file is JSONL, one {"prompt", "target"} object a line; it is split into train and
held-out pairs deterministically (a seeded shuffle), so the same file always gives the same split.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from headscope import assets
from headscope.errors import InputError
from headscope.files import read_text
from headscope.registry import Registry

MAX_PAIRS = 2000
MAX_FIELD_CHARS = 2000
MAX_FILE_BYTES = 4_000_000


@dataclass(frozen=True)
class Pair:
    prompt: str
    target: str

    def __post_init__(self) -> None:
        for field in ("prompt", "target"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{field} must be a non-empty string")
            if len(value) > MAX_FIELD_CHARS:
                raise InputError(f"{field} is {len(value)} characters; the limit is {MAX_FIELD_CHARS}")


@dataclass(frozen=True)
class TaskData:
    """instruction: the prompting baseline's prefix for this task (None: no prompting baseline)."""

    name: str
    description: str
    train: tuple[Pair, ...]
    heldout: tuple[Pair, ...]
    instruction: str | None = None

    def __post_init__(self) -> None:
        if not self.train:
            raise InputError(f"task {self.name!r} has no training pairs")
        if not self.heldout:
            raise InputError(f"task {self.name!r} has no held-out pairs")
        object.__setattr__(self, "instruction", check_instruction(self.instruction))

    @property
    def data_hash(self) -> str:
        return pairs_hash(self.train)


# Variants register by name: task name -> asset file.
TASKS: Registry[str] = Registry("steering task")
TASKS.add("ioi", "ioi.json")
TASKS.add("antonyms", "antonyms.json")


@dataclass(frozen=True)
class ContrastSet:
    """Texts that build a contrastive vector (positives vs negatives), other texts that measure it (held out,
    never used to build it), prompts to steer, and the instruction of the prompting baseline."""

    name: str
    description: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    prompts: tuple[str, ...]
    heldout_positives: tuple[str, ...] = ()
    heldout_negatives: tuple[str, ...] = ()
    instruction: str | None = None


CONTRASTS: Registry[str] = Registry("contrast set")
CONTRASTS.add("sentiment", "sentiment.json")


def load_contrast(name: str = "sentiment") -> ContrastSet:
    if name not in CONTRASTS:
        raise InputError(f"unknown contrast set {name!r}; built-in sets: {', '.join(sorted(CONTRASTS))}")
    raw = assets.read_json("steering", CONTRASTS[name])
    keys = ("positives", "negatives", "prompts", "heldout_positives", "heldout_negatives")
    texts = {k: tuple(str(t) for t in raw.get(k, ())) for k in keys}
    return ContrastSet(name, str(raw.get("description", "")), **texts, instruction=raw.get("instruction"))


MAX_INSTRUCTION_CHARS = 500


def check_instruction(instruction: object) -> str | None:
    """The prompting baseline's prefix (joined to a prompt with a newline); None or blank: no baseline."""
    if instruction is None or (isinstance(instruction, str) and not instruction.strip()):
        return None
    if not isinstance(instruction, str):
        raise InputError(f"the instruction must be text, got {instruction!r}")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise InputError(
            f"the instruction is {len(instruction)} characters; the limit is {MAX_INSTRUCTION_CHARS}"
        )
    return instruction


def pairs_hash(pairs: tuple[Pair, ...] | list[Pair]) -> str:
    """sha256 of the pairs in a canonical JSON form (what a vector file records as its training data)."""
    canon = json.dumps([[p.prompt, p.target] for p in pairs], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def texts_hash(positives: list[str], negatives: list[str]) -> str:
    canon = json.dumps([positives, negatives], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _pair(obj: object, where: str) -> Pair:
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("prompt"), str)
        or not isinstance(obj.get("target"), str)
    ):
        raise InputError(f"{where}: expected an object with string fields 'prompt' and 'target'")
    try:
        return Pair(obj["prompt"], obj["target"])
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def load_task(name: str) -> TaskData:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; built-in tasks: {', '.join(sorted(TASKS))}")
    raw = assets.read_json("steering", TASKS[name])
    train = tuple(_pair(o, f"{name} train[{i}]") for i, o in enumerate(raw["train"]))
    heldout = tuple(_pair(o, f"{name} heldout[{i}]") for i, o in enumerate(raw["heldout"]))
    return TaskData(name, str(raw.get("description", "")), train, heldout, raw.get("instruction"))


def parse_pairs_jsonl(text: str, *, source: str = "data") -> tuple[Pair, ...]:
    """Validate JSONL text of {"prompt", "target"} objects; blank lines are skipped."""
    pairs: list[Pair] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{source} line {n}: not valid JSON ({e.msg})") from None
        pairs.append(_pair(obj, f"{source} line {n}"))
        if len(pairs) > MAX_PAIRS:
            raise InputError(f"{source}: more than {MAX_PAIRS} pairs")
    if len(pairs) < 2:
        raise InputError(
            f"{source}: needs at least 2 pairs (one to train on, one held out); found {len(pairs)}"
        )
    return tuple(pairs)


def split_pairs(
    pairs: tuple[Pair, ...], *, name: str, heldout_fraction: float = 0.25, seed: int = 0
) -> TaskData:
    if not 0.0 < heldout_fraction < 1.0:
        raise InputError(f"heldout_fraction must be in (0, 1); got {heldout_fraction}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_held = min(len(pairs) - 1, max(1, round(heldout_fraction * len(pairs))))
    held = tuple(pairs[i] for i in sorted(order[:n_held]))
    train = tuple(pairs[i] for i in sorted(order[n_held:]))
    return TaskData(name, f"user data ({len(pairs)} pairs)", train, held)


def load_pairs_file(path: str | Path, *, seed: int = 0) -> TaskData:
    """A user JSONL file (CLI only: the app never takes a path)."""
    p = Path(path)
    text = read_text(p, "data", limit=MAX_FILE_BYTES)
    return split_pairs(parse_pairs_jsonl(text, source=p.name), name=p.stem, seed=seed)
