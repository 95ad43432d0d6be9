"""The one shape of an app handler: `fn(inputs: dict, ctx: Ctx) -> dict`, wired by `bind` and `section`
(README: The shape of a tab)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gradio as gr

from headscope.app.state import PRIVATE, user_errors


@dataclass(frozen=True)
class Ctx:
    """What Gradio hands an event besides its inputs."""

    request: gr.Request | None = None
    progress: gr.Progress | None = None


Handler = Callable[[dict[str, Any], Ctx], Mapping[str, Any]]


def handler(fn: Handler, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Callable[..., Any]:
    """The positional function Gradio calls: values in `inputs` order in, a value per `outputs` entry out
    (`gr.skip()` for each output `fn` did not set). Its signature names the API's parameters."""
    names_in, names_out = list(inputs), list(outputs)
    n_in = len(names_in)

    def call(*args: Any, **kw: Any) -> Any:
        # Gradio passes the request and the progress tracker positionally after the inputs: it injects special
        # arguments only into positional parameters (a keyword-only `request` is silently left None).
        values, extra = args[:n_in], [*args[n_in:], None, None]
        request, progress = kw.get("request", extra[0]), kw.get("progress", extra[1])
        got = fn(dict(zip(names_in, values, strict=True)), Ctx(request, progress))
        unknown = sorted(set(got) - set(names_out))
        if unknown:
            raise RuntimeError(f"{fn.__name__} returned outputs the tab did not bind: {unknown}")
        out = tuple(got[k] if k in got else gr.skip() for k in names_out)
        return out[0] if len(out) == 1 else out

    param, kind = inspect.Parameter, inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [param(n, kind) for n in names_in]
    params += [
        param("request", kind, default=None, annotation=gr.Request),
        param("progress", kind, default=gr.Progress()),
    ]
    call.__signature__ = inspect.Signature(params)  # pyright: ignore[reportFunctionMemberAccess]
    call.__annotations__ = {"request": gr.Request}  # Gradio finds the request by its annotation
    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return user_errors(call)


def bind(
    trigger: Callable[..., Any],
    fn: Handler,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    **event: Any,
) -> Any:
    """Wire `fn` to an event listener (`button.click`, `dropdown.change`, ...): `event` holds `api_name`, the
    concurrency group (`VIEW_EVENT` / `JOB_EVENT`) and any other listener option."""
    return trigger(
        handler(fn, inputs, outputs), inputs=list(inputs.values()), outputs=list(outputs.values()), **event
    )


def section(
    trigger: Callable[..., Any],
    run: Handler,
    draw: Handler,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    views: Mapping[str, Any],
    draw_inputs: Mapping[str, Any] | None = None,
    controls: Any = None,
    on_change: Any = None,
    session: Any = None,
    **event: Any,
) -> Any:
    """The shape every result section repeats: `trigger` runs the endpoint `run`, which returns the capability's
    JSON into `outputs` (a hidden gr.JSON, maybe a status line); a private follow-up `draw(draw_inputs)` (default:
    `outputs`) draws `views` and downloads from that JSON — after `run` succeeds, or whenever the component
    `on_change` changes (a second endpoint or a session import also sets it). `controls` (a `jobs.JobControls`):
    a job, with its status line and its Cancel shown while it runs; `session` (`ctx.session`): redraw after a
    session import. `event`: `api_name`, the group (`VIEW_EVENT` / `JOB_EVENT`; `view=True` with controls), ...
    Returns the endpoint's event."""
    start = controls.bind if controls is not None else bind
    done = start(trigger, run, inputs=inputs, outputs=outputs, **event)
    draw_in = dict(outputs if draw_inputs is None else draw_inputs)
    after = done.success if on_change is None else on_change.change
    bind(after, draw, inputs=draw_in, outputs=views, **PRIVATE)
    if session is not None:
        session.rebuild(handler(draw, draw_in, views), list(draw_in.values()), list(views.values()))
    return done


def pick(components: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The named entries of a tab's components, in that order (a section's inputs or views)."""
    return {n: components[n] for n in names}
