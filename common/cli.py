"""What every CLI of the toolkit does the same way: logging, one-line errors, exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Callable, Optional, Sequence

from .errors import ConversionError, one_line

EXIT_INTERNAL = 1


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and, when outputs differ, locate the first divergent node")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print errors only (and no progress line on a terminal)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")


LOG_FORMAT = "%(levelname)s: %(message)s"


def log_level(args: argparse.Namespace) -> int:
    """The logging level ``-q``/``-v``/``--debug`` ask for (batch workers log at the same level)."""
    level = logging.WARNING
    if getattr(args, "verbose", False) or getattr(args, "debug", False):
        level = logging.DEBUG if getattr(args, "debug", False) else logging.INFO
    if getattr(args, "quiet", False):
        level = logging.ERROR
    return level


def setup_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(level=log_level(args), format=LOG_FORMAT, stream=sys.stderr, force=True)


def run_cli(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a CLI handler; turn every failure into one line on stderr and the documented exit code."""
    try:
        return int(handler(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure becomes one line
        code, line = describe_failure(exc, debug=getattr(args, "debug", False))
    print(f"error: {line}", file=sys.stderr)
    return code


def cli_main(build_parser: Callable[[], argparse.ArgumentParser], argv: Optional[Sequence[str]] = None) -> int:
    """The ``main()`` of every toolkit CLI: parse, set up logging, run the chosen sub-command's
    ``handler`` through :func:`run_cli`; with no sub-command chosen, print the help and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    setup_logging(args)
    return run_cli(args.handler, args)


def describe_failure(exc: BaseException, *, debug: bool = False) -> tuple[int, str]:
    """(exit code, the one line after ``error:``) for a failed conversion; with ``debug`` the
    traceback goes to stderr first. Shared by :func:`run_cli` and the batch workers."""
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, MemoryError):
        return EXIT_INTERNAL, "out of memory"
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, ConversionError):
        return exc.exit_code, str(exc)
    # a bug of ours: still one line, traceback with --debug
    return EXIT_INTERNAL, f"internal error ({one_line(exc)}); rerun with --debug and report it"


def parse_shapes(items: Optional[Sequence[str]]) -> dict[str, tuple[int, ...]]:
    """Parse ``name:1,3,224,224`` items (repeatable) into a dict."""
    from .errors import ShapeError

    shapes: dict[str, tuple[int, ...]] = {}
    for item in items or ():
        name, sep, dims = item.rpartition(":")
        if not sep or not name:
            raise ShapeError(f"--input-shape {item!r}: expected NAME:D1,D2,... (for example data:1,3,224,224)")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise ShapeError(f"--input-shape {item!r}: dimensions must be integers") from None
        if any(d < 0 for d in shape):
            raise ShapeError(f"--input-shape {item!r}: dimensions must be >= 0")
        shapes[name] = shape
    return shapes


def parse_dtypes(items: Optional[Sequence[str]]) -> dict[str, str]:
    """Parse ``name:float32`` items into a dict."""
    from .errors import ShapeError

    out: dict[str, str] = {}
    for item in items or ():
        name, sep, dtype = item.rpartition(":")
        if not sep or not name or not dtype:
            raise ShapeError(f"--input-dtype {item!r}: expected NAME:DTYPE (for example data:float32)")
        out[name] = dtype
    return out
