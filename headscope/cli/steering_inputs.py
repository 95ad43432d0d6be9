"""The `steer` command's configs and inputs: one frozen config per command (every value checked in
`__post_init__`, before any model loads) and the reading of its inputs — prompts, held-out texts or items, the
prompting instruction — from files and built-in sets. `cli/steering.py` parses into these configs and writes them
back (`to_argv`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from headscope import checks
from headscope.cli.common import DEFAULT_MODEL, read_lines
from headscope.errors import InputError

MAX_NEW_TOKENS = 128  # = steering.generate.MAX_NEW_TOKENS (kept here so `--help` does not import torch)
_BARE_COUNT = re.compile(r"^\s*\d+\s*$")


# ---- configs ------------------------------------------------------------------------------------------------------
MAX_TEXT_CHARS = 4096  # a path, a model name, a head selection


def _text(value: Any, name: str, *, limit: int = MAX_TEXT_CHARS) -> str | None:
    """None, or a non-empty text of at most `limit` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} must be a non-empty text, got {value!r:.40}")
    if len(value) > limit:
        raise InputError(f"{name} is {len(value)} characters; the limit is {limit}")
    return value


def _texts(obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        _text(getattr(obj, name), name.replace("_", "-"))


def _instruction(value: Any) -> None:
    """None (the task's), "" (none) or an instruction of at most 500 characters."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"the instruction must be text, got {value!r:.40}")
    if value is not None and len(value) > 500:
        raise InputError(f"the instruction is {len(value)} characters; the limit is 500")


def _of(value: Any, cls: type, name: str) -> Any:
    if not isinstance(value, cls):
        raise InputError(f"{name} must be {cls.__name__} options, got {value!r:.40}")
    return value


def _inline(texts: Any, side: str) -> tuple[str, ...]:
    """Texts given on the command line: () or the checked, non-blank texts (blank ones are refused: a repeated
    option has no blank lines to skip)."""
    from headscope.steering.contrastive import check_texts

    if not isinstance(texts, tuple | list):
        raise InputError(f"the {side} texts must be a list of texts, got {texts!r:.40}")
    if not texts:
        return ()
    kept = tuple(check_texts(list(texts), side))
    if len(kept) != len(texts):
        raise InputError(f"the {side} texts include a blank one")
    return kept


def _named_model(obj: Any) -> None:
    """Commands that build from scratch run on a named model: no name means the default one (what the parser
    gives), so the config stores it and `to_argv` can write it."""
    m = _of(obj.model, ModelOptions, "model")
    if m.model is None:
        object.__setattr__(obj, "model", replace(m, model=DEFAULT_MODEL))


@dataclass(frozen=True)
class ModelOptions:
    """--model / --device / --device-map / --max-memory / --offload-dir / --json (cli.common.model_args)."""

    model: str | None = DEFAULT_MODEL
    device: str | None = None
    device_map: str | None = None
    max_memory: str | None = None
    offload_dir: str | None = None
    json: bool = False

    def __post_init__(self) -> None:
        _texts(self, ("model", "max_memory", "offload_dir"))
        if self.device is not None:
            checks.choice(self.device, "device", ("cpu", "cuda"))
        if self.device_map is not None:
            checks.choice(self.device_map, "device_map", ("auto", "balanced"))
        object.__setattr__(self, "json", checks.flag(self.json, "json"))


@dataclass(frozen=True)
class EvalOptions:
    """What a run is read on. task: a built-in set (contrast set, or LoFiT task for `lofit apply`) giving prompts,
    held-out texts or items and the instruction; prompts: --prompt, repeatable (default: the task's);
    heldout_pos / heldout_neg: files of held-out texts; instruction: the prompting baseline's prefix (None: the
    task's; "": none)."""

    task: str | None = None
    prompts: tuple[str, ...] = ()
    heldout_pos: str | None = None
    heldout_neg: str | None = None
    instruction: str | None = None
    max_new_tokens: int = 24
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        from headscope.steering.comparison import check_prompt

        set_ = object.__setattr__
        _texts(self, ("task", "heldout_pos", "heldout_neg"))
        if not isinstance(self.prompts, tuple | list):
            raise InputError(f"prompts must be a list of texts, got {self.prompts!r:.40}")
        set_(self, "prompts", tuple(check_prompt(p) for p in self.prompts))
        set_(self, "max_new_tokens", checks.integer(self.max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS))
        set_(self, "resamples", checks.integer(self.resamples, "resamples", 100, 100_000))
        set_(self, "seed", checks.integer(self.seed, "seed", 0, 2**53))
        if (self.heldout_pos is None) != (self.heldout_neg is None):
            raise InputError("give both --heldout-pos and --heldout-neg (plain-text files, one text a line)")
        _instruction(self.instruction)  # "" is kept: no prompting rows, even with a task's instruction


@dataclass(frozen=True)
class ContrastiveRun:
    """`steer contrastive`: build a vector from --pos/--neg (or the --task contrast set's texts), then compare."""

    model: ModelOptions = field(default_factory=ModelOptions)
    evaluation: EvalOptions = field(default_factory=EvalOptions)
    pos: str | None = None
    neg: str | None = None
    layer: int | None = None
    heads: str | None = None
    alpha: float = 0.2
    position: str = "last"
    pooling: str = "mean"
    out: str | None = None
    pos_texts: tuple[str, ...] = ()  # --pos-text, repeatable: the texts themselves (the app's pasted lists)
    neg_texts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from headscope.steering.direction import check_alpha

        set_ = object.__setattr__
        _named_model(self)
        _of(self.evaluation, EvalOptions, "evaluation")
        _texts(self, ("pos", "neg", "heads", "out"))
        set_(self, "pos_texts", _inline(self.pos_texts, "positive"))
        set_(self, "neg_texts", _inline(self.neg_texts, "negative"))
        if bool(self.pos_texts) != bool(self.neg_texts):
            raise InputError("give both --pos-text and --neg-text (each repeatable), or neither")
        if self.pos_texts and (self.pos is not None or self.neg is not None):
            raise InputError(
                "give the texts as files (--pos/--neg) or inline (--pos-text/--neg-text), not both"
            )
        set_(self, "layer", checks.optional_integer(self.layer, "layer", 0, 10_000))
        set_(self, "alpha", check_alpha(self.alpha))
        checks.choice(self.position, "position", ("last", "all"))
        checks.choice(self.pooling, "pooling", ("mean", "last"))
        if self.layer is not None and self.heads is not None:
            raise InputError("give --layer or --heads, not both")
        _heads_syntax(self.heads)


@dataclass(frozen=True)
class ContrastiveApply:
    """`steer contrastive apply`: a saved vector, compared (α and position default to the saved ones)."""

    vectors: str
    model: ModelOptions = field(default_factory=lambda: ModelOptions(model=None))
    evaluation: EvalOptions = field(default_factory=EvalOptions)
    alpha: float | None = None
    position: str | None = None

    def __post_init__(self) -> None:
        from headscope.steering.direction import check_alpha

        _of(self.model, ModelOptions, "model")
        _of(self.evaluation, EvalOptions, "evaluation")
        if _text(self.vectors, "vectors") is None:
            raise InputError("vectors: give the folder written by --out")
        if self.alpha is not None:
            object.__setattr__(self, "alpha", check_alpha(self.alpha))
        if self.position is not None:
            checks.choice(self.position, "position", ("last", "all"))


@dataclass(frozen=True)
class LofitTrain:
    """`steer lofit train`: LoFiT on a built-in task or a JSONL file, its held-out table and the permutation test."""

    model: ModelOptions = field(default_factory=ModelOptions)
    task: str | None = None
    data: str | None = None
    heads: str | None = None
    k: int | None = None
    scale_steps: int = 30
    bias_steps: int = 30
    batch_size: int = 8
    seed: int = 0
    random_sets: int = 20
    eval_prompts: int = 8
    eval_tokens: int = 8
    resamples: int = 1000
    instruction: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        _named_model(self)
        _texts(self, ("task", "data", "heads", "out"))
        _instruction(self.instruction)
        if (self.task is None) == (self.data is None):
            raise InputError("give --task or --data (one of them)")
        _heads_syntax(self.heads, lofit=True)
        lofit = self.lofit_config()  # every number checked where the library checks it
        for name in ("k", "scale_steps", "bias_steps", "batch_size", "seed", "random_sets", "eval_prompts",
                     "eval_tokens", "resamples"):  # fmt: skip
            object.__setattr__(self, name, getattr(lofit, name))

    def lofit_config(self, heads: Any = None) -> Any:
        from headscope.steering.lofit import LofitConfig

        return LofitConfig(
            k=self.k, scale_steps=self.scale_steps, bias_steps=self.bias_steps, batch_size=self.batch_size,
            seed=self.seed, random_sets=self.random_sets, heads=heads, eval_prompts=self.eval_prompts,
            eval_tokens=self.eval_tokens, resamples=self.resamples,
        )  # fmt: skip


@dataclass(frozen=True)
class LofitApply:
    """`steer lofit apply`: saved offsets, compared; --task (a LoFiT task) adds its held-out items' accuracy."""

    vectors: str
    model: ModelOptions = field(default_factory=lambda: ModelOptions(model=None))
    evaluation: EvalOptions = field(default_factory=EvalOptions)

    def __post_init__(self) -> None:
        _of(self.model, ModelOptions, "model")
        _of(self.evaluation, EvalOptions, "evaluation")
        if _text(self.vectors, "vectors") is None:
            raise InputError("vectors: give the folder written by --out")
        if self.evaluation.heldout_pos is not None:  # the command has no such options
            raise InputError("lofit apply reads a task's held-out items (--task), not held-out text files")


Config = ContrastiveRun | ContrastiveApply | LofitTrain | LofitApply


# ---- inputs --------------------------------------------------------------------------------------------------------
def _heads_syntax(raw: str | None, *, lofit: bool = False) -> str | None:
    """Check a --heads value's grammar before loading a model; a bare number was LoFiT's old K."""
    from headscope.selection import parse_patterns

    if raw is None:
        return None
    if lofit and _BARE_COUNT.match(raw):
        raise InputError(
            f"--heads now selects heads (L.H, L.*, *.H, e.g. '9.4, 12.*'); "
            f"the number of heads to tune is --k: use --k {raw.strip()}"
        )
    if not parse_patterns(raw):
        raise InputError("--heads is empty: give heads like '9.4, 12.*'")
    return raw


def texts_from_files(pos: str, neg: str, what: str) -> tuple[list[str], list[str]]:
    from headscope.steering.contrastive import check_texts

    p, n = read_lines(pos, f"{what}positive"), read_lines(neg, f"{what}negative")
    return check_texts(p, f"{what}positive"), check_texts(n, f"{what}negative")


@dataclass(frozen=True)
class Inputs:
    """What a comparison runs on, read and checked before any model loads."""

    prompts: tuple[str, ...]
    texts: Any  # steering.heldout.HeldOut | None
    sbs: Any  # steering.comparison.SideBySideConfig
    items: tuple[Any, ...] = ()  # LoFiT held-out pairs (lofit apply --task)


def contrast_inputs(e: EvalOptions, defining: tuple[list[str], list[str]] | None = None) -> Inputs:
    """Prompts, held-out texts and the prompting instruction for a vector (contrastive or feature steering).

    Held-out texts come from --heldout-pos/--heldout-neg, else the --task contrast set's held-out sets, else the
    texts that built the vector (`defining`), marked in-sample; a set that shares any text with `defining` is
    marked not held out."""
    from headscope.steering.comparison import SideBySideConfig
    from headscope.steering.generate import GenConfig
    from headscope.steering.heldout import HeldOut
    from headscope.steering.tasks import load_contrast

    cs = load_contrast(e.task) if e.task is not None else None
    if e.heldout_pos is not None and e.heldout_neg is not None:
        pos, neg = texts_from_files(e.heldout_pos, e.heldout_neg, "held-out ")
    elif cs is not None:
        pos, neg = list(cs.heldout_positives), list(cs.heldout_negatives)
    else:
        pos, neg = defining or (None, None)
    texts = None
    if pos and neg:
        shared = defining is not None and bool(set(pos + neg) & set(defining[0] + defining[1]))
        texts = HeldOut(tuple(pos), tuple(neg), held_out=not shared)
    prompts = e.prompts or (cs.prompts if cs is not None else ())
    if not prompts:
        raise InputError("give --prompt (repeatable), or --task for a built-in set of prompts")
    instruction = e.instruction if e.instruction is not None else (cs.instruction if cs is not None else None)
    return Inputs(
        tuple(prompts), texts, SideBySideConfig(GenConfig(e.max_new_tokens), instruction, e.resamples, e.seed)
    )


def task_inputs(e: EvalOptions) -> Inputs:
    """`lofit apply`: prompts (default: the LoFiT task's first held-out prompts), its items and instruction."""
    from headscope.steering.comparison import SideBySideConfig
    from headscope.steering.generate import GenConfig
    from headscope.steering.tasks import load_task

    if e.heldout_pos is not None:
        raise InputError("lofit apply takes --task (a LoFiT task's held-out items), not held-out text files")
    task = load_task(e.task) if e.task is not None else None
    prompts = e.prompts or (tuple(p.prompt for p in task.heldout[:8]) if task is not None else ())
    if not prompts:
        raise InputError("give --prompt (repeatable), or --task for the task's held-out prompts")
    instruction = (
        e.instruction if e.instruction is not None else (task.instruction if task is not None else None)
    )
    sbs = SideBySideConfig(GenConfig(e.max_new_tokens), instruction, e.resamples, e.seed)
    return Inputs(tuple(prompts), None, sbs, task.heldout if task is not None else ())
