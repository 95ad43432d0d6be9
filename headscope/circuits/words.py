"""Word lists for the greater-than and docstring tasks (papers.md §3.4). Plain data; tasks filter them per tokenizer.
The IOI names and templates are in `headscope.ioi` (shared with steering)."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Greater-than nouns (ACDC's 120, after Hanna et al.).
GT_NOUNS: tuple[str, ...] = _words(
    "abduction accord affair agreement appraisal assaults assessment attack attempts campaign captivity case "
    "challenge chaos clash collaboration coma competition confrontation consequence conspiracy construction "
    "consultation contact contract convention cooperation custody deal decline decrease demonstrations "
    "development disagreement disorder dispute domination dynasty effect effort employment endeavor engagement "
    "epidemic evaluation exchange existence expansion expedition experiments fall fame flights friendship growth "
    "hardship hostility illness impact imprisonment improvement incarceration increase insurgency invasion "
    "investigation journey kingdom marriage modernization negotiation notoriety obstruction operation order "
    "outbreak outcome overhaul patrols pilgrimage plague plan practice process program progress project pursuit "
    "quest raids reforms reign relationship retaliation riot rise rivalry romance rule sanctions shift siege "
    "slump stature stint strikes study test testing tests therapy tour tradition treaty trial trip unemployment "
    "voyage warfare work"
)

# Docstring task: our own list of short, common Python variable names (the task keeps the single-token ones).
VAR_NAMES: tuple[str, ...] = _words(
    "data file path name value key index item count size result source target config options params args "
    "kwargs mode level state status text line word token label title message error code number limit offset "
    "start end step width height length depth shape dim axis color image model layer input output buffer "
    "stream node edge graph tree root parent child left right user group role email password host port url "
    "query request response header body content format style type kind field column row table cell record "
    "entry batch chunk block page section filter order sort prefix suffix pattern regex template context "
    "scope event action handler callback timeout delay interval retry seed rate scale weight bias loss score "
    "mask flag default base version date time year month day hour minute second tag note comment parser "
    "writer reader client server session cache store queue stack list array vector matrix tensor grid"
)
DOC_WORDS: tuple[str, ...] = _words(
    "the new old first last main current default given input output total final real local global user "
    "file value number string list object system process server client method function action result state "
    "time data name line page model image task event message error request response record"
)
METHOD_NAMES: tuple[str, ...] = (
    "load", "save", "run", "update", "create", "build", "process", "compute", "check", "parse", "send", "fetch",
    "render", "merge", "apply", "reset", "handle", "transform", "validate", "register",
)  # fmt: skip
