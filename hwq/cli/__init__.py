"""The `hwq` command line: a click group of noun subcommands (DESIGN.md §7).

stdout carries only results; logs and progress go to stderr. Bad input exits 2 with a message
naming the file, key or layer; other failures exit 1; Ctrl-C (SIGINT) exits 130. Tracebacks
only with `--debug` or `HWQ_DEBUG=1`. Heavy imports happen inside commands.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from hwq import __version__
from hwq.errors import HwqError, UserError

log = logging.getLogger("hwq")
_DEBUG = {"on": False}  # `hwq --debug` of the command main() runs now

# (module, command attribute) of every subcommand, imported when the group is built
COMMANDS: tuple[tuple[str, str], ...] = (
    ("hwq.cli.profile_cmd", "profile"),
    ("hwq.cli.graph_cmd", "graph"),
    ("hwq.cli.cost_cmd", "cost"),
    ("hwq.cli.cost_cmd", "table"),
    ("hwq.cli.finetune_cmd", "finetune"),
    ("hwq.cli.search_cmd", "search"),
    ("hwq.cli.verify_cmd", "verify"),
    ("hwq.cli.report_cmd", "report"),
    ("hwq.cli.report_cmd", "runs"),
    ("hwq.cli.report_cmd", "compare"),
    ("hwq.cli.report_cmd", "export"),
    ("hwq.cli.cache_cmd", "cache"),
    ("hwq.cli.measure_cmd", "measure"),
)


def _setup_logging(verbosity: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbosity > 0 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hwq: %(levelname)s: %(message)s"))
    root = logging.getLogger("hwq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hwq")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option("-v", "--verbose", count=True, help="More logging on stderr.")
@click.option("--debug", is_flag=True, help="Show the traceback of any error (also HWQ_DEBUG=1).")
def cli(quiet: bool, verbose: int, debug: bool) -> None:
    """hwq: which bit-width should each layer of this network use on this device?"""
    _setup_logging(verbose, quiet)
    _DEBUG["on"] = debug


def _register() -> None:
    for module_name, attr in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a command whose module is not there yet
                continue
            raise
        cli.add_command(getattr(module, attr))


_register()


def debugging() -> bool:
    """Whether errors show their traceback (`hwq --debug` or HWQ_DEBUG=1)."""
    return _DEBUG["on"] or os.environ.get("HWQ_DEBUG", "") not in ("", "0")


def _traceback() -> None:
    if debugging():
        import traceback

        traceback.print_exc(file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps hwq's errors to exit codes and one-line messages."""
    _DEBUG["on"] = False
    try:
        cli.main(args=argv, prog_name="hwq", standalone_mode=False)
    except click.exceptions.Abort as exc:
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        click.echo("hwq: interrupted" if interrupted else "hwq: aborted", err=True)
        sys.exit(130 if interrupted else 1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        _traceback()
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"hwq: error: {line}", err=True)
        sys.exit(2)
    except HwqError as exc:
        _traceback()
        click.echo(f"hwq: failed: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("hwq: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debugging():
            raise
        click.echo(
            f"hwq: internal error: {type(exc).__name__}: {exc} (hwq --debug or HWQ_DEBUG=1 "
            "for the traceback)",
            err=True,
        )
        sys.exit(1)
