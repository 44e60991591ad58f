"""The command line: parse options, call one function, print its result, map errors to exit codes.

Heavy modules (torch, onnx, runtimes) are imported inside the commands so `toolkit --help` is fast
and works without optional packages. One module per group of verbs; `group` holds the click group
and the options several commands share; the work lives in the modules the commands call.
"""

from __future__ import annotations

import signal
import sys
import traceback

import click

from toolkit.cli import bench, cluster, export, info, serve, train  # noqa: F401 - each registers its commands
from toolkit.cli.group import _debug_enabled, _one_line, cli
from toolkit.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    ToolkitError,
)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    debug = _debug_enabled()
    try:
        rv = cli.main(args=argv, prog_name="toolkit", standalone_mode=False)
    except ToolkitError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt (SIGINT, or SIGTERM via the handler above)
        if debug:
            traceback.print_exc()
        click.echo("error: interrupted; artifacts already written are intact", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(exc.format_message())} (see `toolkit --help`)", err=True)
        sys.exit(exc.exit_code if exc.exit_code else EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        click.echo("error: interrupted; artifacts already written are intact", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        package = (exc.name or "").split(".")[0]
        if package and package != "toolkit":  # an optional or broken install, not a bug in the toolkit
            click.echo(f"error: the Python package '{package}' is not installed and this command needs it; install it (pip install -e '.[openvino,serve,cluster]' has every CPU extra)", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        click.echo(f"error: internal error {type(exc).__name__}: {_one_line(str(exc))[:300]} (re-run with --debug for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, traceback only with --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: internal error {type(exc).__name__}: {_one_line(str(exc))[:300]} (re-run with --debug for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)
