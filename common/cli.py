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
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING
    if getattr(args, "verbose", False) or getattr(args, "debug", False):
        level = logging.DEBUG if getattr(args, "debug", False) else logging.INFO
    if getattr(args, "quiet", False):
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)


def run_cli(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a CLI handler; turn every failure into one line on stderr and the documented exit code."""
    debug = getattr(args, "debug", False)
    try:
        return int(handler(args) or 0)
    except ConversionError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # a bug of ours: still one line, traceback with --debug
        if debug:
            traceback.print_exc()
        print(f"error: internal error ({one_line(exc)}); rerun with --debug and report it", file=sys.stderr)
        return EXIT_INTERNAL


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
