"""What every subcommand shares: exit codes, one-line user errors, and `-o json|yaml|table` output.

Subcommand modules import this module and nothing else from `istiod_py.cli`, so the
package's `main` can import every subcommand without an import cycle."""

from __future__ import annotations

import argparse
import enum
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

import yaml

# argparse's private type, which every subcommand module registers on; generic only in typeshed.
if TYPE_CHECKING:
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = argparse._SubParsersAction


class ExitCode(enum.IntEnum):
    """The process exit status of every `istiod-py` command (listed in `--help` and the README)."""

    OK = 0
    # The command ran and found problems (validate/analyze: configuration errors).
    FAILED = 1
    # Bad flags or arguments (argparse's own status).
    USAGE = 2
    # An input cannot be read: a missing path, a directory where a file was needed,
    # a file that is not UTF-8 text, no permission.
    INPUT = 3
    # A network resource is unavailable: a port already in use, a control plane that does not answer.
    UNAVAILABLE = 4


EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 the command found problems (e.g. configuration errors); 2 bad usage; "
    "3 an input cannot be read (missing path, not UTF-8, no permission); "
    "4 unavailable (a port already in use, a control plane not answering)"
)


class CliError(Exception):
    """An error a user can meet and fix: printed as one line `istiod-py: error: ...`, never a traceback."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


OUTPUT_FORMATS = ("table", "json", "yaml")


def add_output_flag(p: argparse.ArgumentParser, default: str = "table") -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default=default,
        help=f"output format (default {default})",
    )


Table = Callable[[Any], Sequence[Sequence[str]]]


def render(data: Any, fmt: str, table: Table | None = None) -> str:
    """`data` (plain dicts/lists) as JSON, YAML, or a table whose rows `table(data)` makes
    (first row: the header)."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False))
    if table is None:
        raise CliError(f"output format {fmt!r} is not supported by this command; use json or yaml", ExitCode.USAGE)
    return format_table(table(data))


def format_table(rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(max(len(r) for r in rows))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def emit(data: Any, fmt: str, table: Table | None = None, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(render(data, fmt, table))
