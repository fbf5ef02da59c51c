"""The ``dli`` command: the root app, its one error boundary, and its sub-commands, composed statically.

A DliError anywhere below prints ``Error [DLI-xyz]: …`` (with the fix) on stderr and exits 1; ``-v`` adds
the traceback. Sub-commands are imported here at module level, so a broken import fails loudly instead of
making ``dli workflow`` silently disappear. Nothing here imports Airflow: commands import what they need
when they run.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dli_airflow.cli import dataset, dev, init, spec, workflow
from dli_airflow.errors import DliError, scrub

# `import httpx` also imports httpx's own command line (httpx._main: click, rich.progress, pygments; ~35 ms of
# every `dli workflow` command) whenever click is installed. The dli process never runs it: httpx then
# defines its stub `httpx.main`, exactly as where click is absent.
sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]

_state: dict[str, bool] = {"verbose": False}


#: Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Exit code of a command whose reader went away (``dli workflow list | head``): 128 + SIGPIPE, as shells report it.
EXIT_BROKEN_PIPE = 141


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` with ``-v``, scrubbed of credentials like every other output."""
    from rich.markup import escape

    if _state["verbose"]:
        _console().print(escape(scrub("".join(traceback.format_exception(exc)))), style="dim")


def print_error(exc: DliError) -> None:
    """Print one DLI error as ``Error [DLI-xyz]: message`` with its fix (and the traceback with ``-v``)."""
    from rich.markup import escape

    _traceback(exc)
    _console().print(f"[bold red]Error [{exc.code}]:[/] {escape(scrub(exc.render()))}")


def print_unexpected(exc: BaseException) -> None:
    """A failure that is not a DLI error: one line saying what broke and how to see more, never a traceback
    (unless ``-v``)."""
    from rich.markup import escape

    _traceback(exc)
    detail = scrub(str(exc).strip().splitlines()[0][:300]) if str(exc).strip() else ""
    more = "" if _state["verbose"] else " (run again with -v for the traceback)"
    _console().print(
        f"[bold red]Error:[/] unexpected {escape(type(exc).__name__)}{': ' + escape(detail) if detail else ''}"
        f"{more}; if the input looks right, please report it as a dli-airflow bug"
    )


class _BoundaryGroup(TyperGroup):
    """The root group, the CLI's one error boundary: a DliError anywhere below it becomes one line on stderr
    and exit code 1; Ctrl-C becomes "cancelled" and exit code 130; anything else one line and exit 1."""

    #: the common options every command takes wherever they are written (seed 003 §3.2): `dli workflow run X -v`
    COMMON_FLAGS = ("-v", "--verbose")

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """Move ``-v``/``--verbose`` written after the sub-command (but before a ``--``) to the root."""
        end = args.index("--") if "--" in args else len(args)
        hoisted = [a for a in args[:end] if a in self.COMMON_FLAGS]
        if hoisted:
            args = [hoisted[0]] + [a for a in args[:end] if a not in self.COMMON_FLAGS] + args[end:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DliError as exc:
            print_error(exc)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            _console().print("cancelled")
            raise typer.Exit(code=EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _reader_gone()
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the normal ends of a command, and its usage errors (typer prints those, exit 2)
        except Exception as exc:  # the boundary: no input may end in a traceback
            print_unexpected(exc)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_BoundaryGroup,
    name="dli",
    help="dli-airflow: Dataset Specs (YAML + SQL) as Airflow DAGs on Trino, BigQuery or DuckDB.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug output.")] = False,
) -> None:
    _state["verbose"] = verbose


app.command("init")(init.init)
app.add_typer(spec.app, name="spec")
app.add_typer(dataset.app, name="dataset")
app.add_typer(dev.app, name="dev")
app.add_typer(workflow.app, name="workflow")


def main() -> None:
    """Entry point of the ``dli`` script."""
    try:
        app()
    except DliError as exc:  # raised outside a command (e.g. while parsing options)
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _console().print("cancelled")
        _leave_now(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _reader_gone()
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            _leave_now(EXIT_INTERRUPTED)
        raise


def _reader_gone() -> None:
    """The output's reader closed the pipe (``| head``): stop quietly, as a Unix tool does, not with an error
    about it; stdout goes to /dev/null first, so the interpreter's own flush at exit cannot fail again."""
    import os

    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


def _leave_now(code: int) -> None:
    """End a cancelled command at once. A query cancelled in a native engine may still be unwinding on the
    engine's own threads (DuckDB's scheduler), and the interpreter's shutdown waiting on them can hang or
    abort ("terminate called … exception not rethrown"); nothing is left to flush or close but the output."""
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
