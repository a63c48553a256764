"""Terminal plumbing for commands: stderr console, progress bars, error handling, JSON out.

Only the CLI layer (cli.py and commands/) imports this module.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from munit_cli.errors import MunitError
from munit_cli.runtime import check_precision, emulation_warning

err_console = Console(stderr=True)


class State:
    debug = False


state = State()


def error_line(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def pick_precision(precision: str, device: Any) -> str:
    """Resolve a --precision value (auto included) for `device`; an explicit bf16 on a CPU that
    only emulates it still runs, after one warning line."""
    resolved = check_precision(precision, device)
    message = emulation_warning(resolved, device)
    if message:
        warn(message)
    return resolved


def friendly(fn: Callable) -> Callable:
    """Turn MunitError into `error: ...` + exit code, Ctrl-C into exit 130, an OSError from the
    machine into one line and exit 1; --debug re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MunitError as e:
            if state.debug:
                raise
            error_line(str(e))
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            if state.debug:
                raise
            error_line("interrupted")
            raise typer.Exit(130)
        except OSError as e:  # the machine, not the code: a full disk, a vanished file, permissions
            if state.debug:
                raise
            where = f" ({e.filename})" if e.filename else ""
            error_line(f"{e.strerror or e}{where}: check the path, its permissions and the free disk space")
            raise typer.Exit(1)

    return wrapper


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def progress(*extra_columns: Any, disable: bool = False) -> Progress:
    """A Rich progress bar on stderr: description, bar, count, elapsed, ETA, extra columns."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=err_console,
        disable=disable,
        redirect_stdout=False,  # results printed during a run must stay on stdout
        redirect_stderr=False,
    )
