"""The ``pixforge`` command line (also ``python -m pixforge``): thin wrappers over the Python API.

One module per command group (``train``, ``translate``, ``data``, ``evaluate``, ``reproduce``, ``serve``,
``interop``); importing
each registers its commands on the root group. Bad input ends with one line on stderr and exit code 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from pixforge.cli import (  # noqa: F401  (each registers its commands)
    data,
    evaluate,
    interop,
    reproduce,
    serve,
    train,
    translate,
)
from pixforge.cli._base import cli
from pixforge.distributed import PeerError
from pixforge.errors import PixforgeError

__all__ = ["cli", "main"]


def _error(line: str) -> None:
    """Print a one-line error (under ``--nproc`` the ranks > 0 only record it for the launcher)."""
    from pixforge.distributed import ERROR_DIR_ENV, record_error

    record_error(line)
    if os.environ.get(ERROR_DIR_ENV) is None or os.environ.get("LOCAL_RANK", "0") == "0":
        click.echo(line, err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s" if debug else "%(message)s")
    try:
        cli.main(args=args, prog_name="pixforge", standalone_mode=False)
    except PixforgeError as exc:
        if debug:
            traceback.print_exc()
        _error(f"error: {exc}")
        sys.exit(2)
    except PeerError as exc:
        if debug:
            traceback.print_exc()
        _error(f"error: {exc}")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
