"""Decoding tab: strategies side by side on one prompt against greedy, optionally with the selected heads
ablated or dialled. Wiring only: `decode_compare` checks every input into the `decode compare` command and
runs it as a cancellable job (in this process, or on Ray when HEADSCOPE_RAY_ADDRESS is set) whose value is the
CLI's JSON; `draw` rebuilds the `Comparison` from it and draws every view with `decoding_views`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app import decoding_views as dv
from headscope.app import examples, jobs
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult, json_file
from headscope.app.inputs import choice, integer, number, text
from headscope.app.state import STORE
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import HeadGrid, TokenStrip
from headscope.app.wiring import Ctx, section
from headscope.attention import LocalityDial
from headscope.cli.decoding import CompareCommand, run_compare, to_argv
from headscope.decoding import GRAMMARS, STRATEGIES, Comparison, DecodeConfig
from headscope.decoding.compare import parse_strategies
from headscope.decoding.config import MAX_TREE_SIZE
from headscope.errors import InputError
from headscope.models import CATALOG, resolve

APP_MAX_NEW_TOKENS = 128
MAX_PROMPT_CHARS = 4000
MAX_REGEX_CHARS = 200
NONE = "(none)"
ACTIONS = ("none", "ablate", "dial")
SLOT = "decode_compare"
DEFAULT_STRATEGIES = ["greedy", "token_recycling", "ngram", "lookahead"]
DEFAULT_PROMPT = (
    "Copy this sentence exactly: Krypton is a chemical element; it has symbol Kr and atomic number 36."
)
SUMMARY_PROMPT = (
    "Summarize the following text.\n\nThe Beatles were an English rock band formed in Liverpool in 1960. The band "
    "comprised John Lennon, Paul McCartney, George Harrison and Ringo Starr. They are regarded as the most "
    "influential band of all time and were integral to the development of 1960s counterculture."
)
PAPERS = (
    ("Token Recycling", "https://arxiv.org/abs/2408.08696"),
    ("SWIFT", "https://arxiv.org/abs/2410.06916"),
    ("lookahead decoding", "https://arxiv.org/abs/2402.02057"),
    ("AWRS", "https://arxiv.org/abs/2504.05410"),
    ("speculative sampling", "https://arxiv.org/abs/2211.17192"),
)
NO_ENTROPY = (
    "Attention entropy was not recorded for this run: tick “Record attention entropy” to see every head's "
    "entropy for every generated token."
)
# The numeric fields a user types, with their allowed ranges (the labels are the browser test's handles). They are
# gr.Number, not gr.Slider: a slider snaps a typed 100000 to its maximum in the browser before the server sees it,
# so the range message below could never be shown. Each is checked here, server-side, for API callers too.
NUMBERS: dict[str, tuple[str, str, float, float, bool]] = {  # key: (label, name in messages, lo, hi, integer)
    "max_new_tokens": ("Max new tokens", "max new tokens", 1, APP_MAX_NEW_TOKENS, True),
    "temperature": ("Temperature (0 = greedy)", "temperature", 0.0, 2.0, False),
    "seed": ("Seed", "seed", 0, 2**31 - 1, True),
    "lam": ("Dial λ (distance mode)", "λ", 0.0, 1.0, False),
    "max_draft": ("Max draft length", "max draft length", 1, 16, True),
    "window": ("Jacobi / lookahead window", "Jacobi / lookahead window", 1, 16, True),
    "tree_size": ("Token recycling tree size (drafted nodes)", "tree size", 1, MAX_TREE_SIZE, True),
    "particles": ("SMC particles (constrained)", "SMC particles", 1, 8, True),
}


def checked(inputs: dict[str, Any], key: str) -> int | float:
    """A typed number inside its range, or one line naming the field and the range (never snapped)."""
    _, name, lo, hi, whole = NUMBERS[key]
    return integer(inputs[key], name, int(lo), int(hi)) if whole else number(inputs[key], name, lo, hi)


# -- the command -------------------------------------------------------------------------------------------------
def _heads(inputs: dict[str, Any], model: str) -> tuple[str, str | None]:
    """The heads action and the shared selection as head-set text (checked against the model), or None."""
    act = choice(inputs.get("action") or "none", "heads action", ACTIONS)
    if act == "none":
        return act, None
    return act, str(
        sel.selected_heads(inputs.get("selection"), STORE.get(model), f"the heads action is {act}")
    )


def _draft_model(inputs: dict[str, Any], names: list[str]) -> str | None:
    draft = inputs.get("draft_model")
    if draft not in (None, "", NONE) and draft not in CATALOG:
        raise InputError(f"unknown draft model {draft!r}")
    if "speculative" not in names:
        return None
    if draft in (None, "", NONE):
        raise InputError("speculative needs a draft model (one sharing the target's tokenizer): pick one")
    return str(draft)


def decode_config(inputs: dict[str, Any], action: str, heads: str | None, draft: str | None) -> DecodeConfig:
    """The run's config from the event's values (every number checked above, never int()/float())."""
    grammar = inputs.get("grammar") if inputs.get("grammar") not in (None, "", NONE) else None
    nums: dict[str, Any] = {k: checked(inputs, k) for k in NUMBERS}
    lam = nums.pop("lam")
    regex = None if grammar else text(inputs.get("regex"), "regex", MAX_REGEX_CHARS, allow_empty=True) or None
    return DecodeConfig(
        **nums,
        regex=regex, grammar=grammar, draft_model=draft,
        constraint_method=choice(inputs.get("method") or "awrs", "constraint method", ("awrs", "mask")),
        attention_entropy=bool(inputs.get("entropy")),
        ablate_heads=heads if action == "ablate" else None,
        dial=LocalityDial(lam=lam, heads=heads) if action == "dial" else None,
    )  # fmt: skip


def compare_command(inputs: dict[str, Any]) -> CompareCommand:
    """Every input checked (before any job starts) into the `decode compare` command the job runs."""
    model = str(inputs["model"])
    resolve(model, allow_external=False)
    prompt = text(inputs.get("prompt"), "the prompt", MAX_PROMPT_CHARS)
    names = parse_strategies(list(inputs.get("strategies") or []))
    draft = _draft_model(inputs, names)
    action, heads = _heads(inputs, model)
    cfg = decode_config(inputs, action, heads, draft)
    return CompareCommand(prompt=prompt, strategies=tuple(names), chat=bool(inputs.get("chat")), model=model,
                          config=cfg)  # fmt: skip


# -- handlers ------------------------------------------------------------------------------------------------------
def decode_compare(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Greedy and the chosen strategies on the prompt, as a job; `raw` = the CLI's JSON (a `Comparison`)."""
    cmd = compare_command(inputs)
    n_runs = 1 + sum(1 for n in cmd.strategies if n != "greedy" or cmd.config.intervenes)
    spec = jobs.JobSpec(
        f"decoding {n_runs} runs on {cmd.model}", _work(cmd), model=cmd.model, command=tuple(to_argv(cmd))
    )
    return {"raw": jobs.run(spec, request=ctx.request, slot=SLOT, progress=ctx.progress)}


def _work(cmd: CompareCommand) -> Any:
    """In-process: what `headscope decode compare` does with `cmd` (the models from the app's store). Its own
    function: tests/integration/test_decoding_tab_ray.py replaces it to prove the cluster runs the command."""
    return lambda report: run_compare(cmd, STORE.get, report).to_json()


def draw(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Every view, from the comparison's JSON (private follow-up of the job, and after a session import)."""
    raw = inputs.get("raw")
    if not raw:
        return {}
    c = Comparison.from_json(raw)
    note, grid = dv.departure(c, sel.names(inputs.get("selection")) if inputs.get("selection") else [])
    trees, entropy = dv.step_trees(c), dv.entropy_figure(c)
    file = json_file(raw, f"decode_compare_{c.model}")
    shown = lambda value: gr.update(value=value, visible=value is not None)  # noqa: E731
    return {
        "status": dv.summary(c), "speed": shown(dv.speed_table(c)), "strip": shown(dv.token_strips(c)),
        "note": note, "grid": shown(grid), "trees_note": dv.trees_note(c), "trees": shown(trees),
        "entropy": shown(entropy), "entropy_note": "" if entropy is not None else NO_ENTROPY, "file": shown(file),
    }  # fmt: skip


# -- layout --------------------------------------------------------------------------------------------------------
def _number(key: str, value: float) -> gr.Number:
    label, _, lo, hi, whole = NUMBERS[key]
    return gr.Number(value=value, label=label, precision=0 if whole else None, info=f"{lo:,} to {hi:,}")


def _settings() -> dict[str, Any]:
    """The settings block: every input of `decode_compare` but the model and the selection."""
    c: dict[str, Any] = {}
    c["prompt"] = gr.Textbox(
        label=f"Prompt (at most {MAX_PROMPT_CHARS:,} characters)", lines=4, value=DEFAULT_PROMPT
    )
    c["chat"] = gr.Checkbox(label="Wrap in the model's chat template", value=True)
    c["strategies"] = gr.CheckboxGroup(choices=list(STRATEGIES), value=DEFAULT_STRATEGIES, label="Strategies")
    with gr.Row():
        c["max_new_tokens"], c["temperature"] = _number("max_new_tokens", 32), _number("temperature", 0.0)
        c["seed"] = _number("seed", 0)
        c["entropy"] = gr.Checkbox(label="Record attention entropy (per head, per token)", value=True)
    with gr.Row():
        c["action"] = gr.Radio(list(ACTIONS), value="none", label="The selected heads while decoding")
        c["lam"] = _number("lam", 1.0)
    with gr.Accordion("Draft, constraint and SMC settings", open=False), gr.Row():
        c["max_draft"], c["window"] = _number("max_draft", 6), _number("window", 6)
        c["tree_size"] = _number("tree_size", DecodeConfig().tree_size)
        c["draft_model"] = gr.Dropdown(
            choices=[NONE, *CATALOG], value=NONE, label="Draft model (speculative)"
        )
        c["regex"] = gr.Textbox(
            label="Constraint regex", value=r"[0-9]{3}-[0-9]{4}", max_length=MAX_REGEX_CHARS
        )
        c["grammar"] = gr.Dropdown(choices=[NONE, *GRAMMARS], value=NONE, label="…or a grammar")
        c["method"] = gr.Radio(choices=["awrs", "mask"], value="awrs", label="Constraint method")
        c["particles"] = _number("particles", 1)
    return c  # fmt: skip


def _results() -> dict[str, Any]:
    """The result views; those that would be empty before a run (a table's placeholder headers, a download box)
    stay hidden until `draw` fills them."""
    v: dict[str, Any] = {}
    v["speed"] = gr.Dataframe(label="Speed against greedy (same run)", interactive=False, visible=False)
    v["strip"] = TokenStrip(label="Tokens by strategy", elem_id="hs-decoding-strip", visible=False)
    v["note"] = gr.Markdown()
    v["grid"] = HeadGrid(label="Entropy change at the first departure (bits)", elem_id="hs-decoding-grid",
                         visible=False)  # fmt: skip
    v["trees_note"] = gr.Markdown()
    v["trees"] = Plot(label="Step trees", visible=False)
    v["entropy_note"] = gr.Markdown()
    v["entropy"] = Plot(label="Attention entropy per generated token and head", visible=False)
    raw = RawResult("comparison", elem_id="hs-decoding-download")
    v["file"], v["raw"] = raw.file, raw.json
    return v


@register_tab("Decoding", order=40)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Decoding strategies compared token by token against greedy: how many tokens each verifies per forward "
        "and how fast it is against greedy in the same run, the token trees it drafted at each step, what every "
        "attention head did for each generated token (entropy of its attention row, bits) and, optionally, the "
        "selected heads ablated (mean over the prompt) or dialled while decoding.",
        "Lossless strategies (token_recycling, ngram, lookahead, jacobi, layer_skip, speculative) must reproduce "
        "greedy exactly at temperature 0; the table's × columns are against greedy (below 1× is flagged); green "
        "tokens were drafted and accepted, blue ones produced by the verifier; an outlined token differs from "
        "greedy, and the grid shows which heads changed in the row before the first departure.",
        PAPERS,
    )
    example_slot = gr.Column()
    settings = _settings()
    run = gr.Button("Compare", variant="primary")
    controls = jobs.JobControls.build(SLOT)
    views = _results()
    inputs = {"model": ctx.model, **settings, "selection": ctx.selection.state}
    drawn = {"status": controls.status, **{k: c for k, c in views.items() if k != "raw"}}
    draw_inputs = {"raw": views["raw"], "selection": ctx.selection.state}
    shape = {"inputs": inputs, "outputs": {"raw": views["raw"]}, "views": drawn, "draw_inputs": draw_inputs,
             "controls": controls}  # fmt: skip
    section(run.click, decode_compare, draw, session=ctx.session, api_name="decode_compare", **shape)
    with example_slot:
        ex = examples.worked_example(
            [[DEFAULT_PROMPT, DEFAULT_STRATEGIES, 32], [SUMMARY_PROMPT, DEFAULT_STRATEGIES, 48],
             ["Make up a phone number for a pizza shop, written like 555-1234.", ["greedy", "constrained"], 12]],
            [settings["prompt"], settings["strategies"], settings["max_new_tokens"]], None, [], [],
            labels=["copying: drafts from the prompt", "summarising a passage", "AWRS: a phone-number regex"],
        )  # fmt: skip
        section(ex.load_input_event.then, decode_compare, draw, api_visibility="private", **shape)
    ctx.selection.connect_grid(views["grid"])
    ctx.session.add("decoding", **settings, result=views["raw"])
