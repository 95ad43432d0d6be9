"""The command line batch jobs run, registered by the layer above (the CLI), so batch never imports the CLI.

`headscope.cli` calls `register_command_line(CommandLine(main, build_parser))` when it is imported; batch finds it
with `command_line()` (job files are checked with its parser, jobs run through its `main`). A Ray worker gets the
driver's `CommandLine` as an actor argument (its functions travel by reference, so the worker imports the CLI).
Whoever starts batch work — the `headscope` command, the app — has imported `headscope.cli` first.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from headscope.errors import HeadscopeError


@dataclass(frozen=True)
class CommandLine:
    """`main(argv) -> exit code` (prints the command's JSON under --json) and the parser it parses with."""

    main: Callable[[list[str]], int]
    parser: Callable[[], argparse.ArgumentParser]


_LINE: list[CommandLine] = []


def register_command_line(line: CommandLine) -> None:
    _LINE[:] = [line]


def command_line() -> CommandLine:
    if not _LINE:
        raise HeadscopeError("no command line is registered for batch jobs: import headscope.cli first")
    return _LINE[0]
