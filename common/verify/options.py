"""The verification flags every CLI shares (tolerances, inputs, images), defined once.

Use from a CLI::

    add_tolerance_flags(parser)
    add_input_flags(parser)
    ...
    prepared = inputs_from_args(args, specs)           # PreparedInputs
    report = compare(ref, cand, rtol=args.rtol, atol=args.atol)
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from ..errors import ShapeError
from .inputs import ImageOptions, InputSpec, PreparedInputs, prepare_inputs

TOLERANCE_HELP = ("float32 defaults: atol 1e-5, rtol 1e-4 (float16: 1e-3/1e-2, bfloat16: 1e-2/2e-2, "
                  "float64: 1e-8/1e-7; integers and booleans exact). An element passes when "
                  "|candidate - reference| <= atol + rtol * (|reference| + S), S the output's largest "
                  "magnitude; when an output fails, the reference is rerun on inputs moved by one part in a "
                  "million and the bound widened by 4x how far its own output moves (see docs/ARCHITECTURE.md)")


def add_tolerance_flags(parser: argparse.ArgumentParser, *, rtol: "float | None" = None,
                        atol: "float | None" = None) -> None:
    """``--rtol``/``--atol``; ``None`` defaults mean the per-dtype defaults of :mod:`.compare`."""
    parser.add_argument("--rtol", type=float, default=rtol, metavar="R",
                        help=f"relative tolerance for float outputs (default: {rtol if rtol is not None else 'per dtype'}); "
                             "e.g. --rtol 1e-3. " + TOLERANCE_HELP)
    parser.add_argument("--atol", type=float, default=atol, metavar="A",
                        help=f"absolute tolerance for float outputs (default: {atol if atol is not None else 'per dtype'}); "
                             "e.g. --atol 1e-4")


def check_tolerances(args: argparse.Namespace) -> None:
    """``--rtol``/``--atol`` must be non-negative (one clear line, before any work)."""
    for flag in ("rtol", "atol"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            raise ShapeError(f"--{flag} must be >= 0, got {value:g}")


@contextlib.contextmanager
def verify_json(path: Optional[str]) -> Iterator[Callable[[Any], None]]:
    """``--verify-json PATH``: write the verdict of the block, whether verification passed (the block
    calls ``record(verdict)``) or failed (the :class:`VerificationError` carries the verdict)."""
    def record(verdict: Any) -> None:
        if path and verdict is not None:
            verdict.write_json(path)

    try:
        yield record
    except Exception as exc:
        verdict = getattr(exc, "verdict", None)
        if verdict is not None:
            record(verdict)
        elif path:  # failed before any comparison (the converted module raised): say so all the same
            message = getattr(exc, "message", None) or " ".join(str(exc).split())
            Path(path).write_text(json.dumps({"ok": False, "error": message}, indent=2) + "\n", encoding="utf-8")
        raise


def add_input_flags(parser: argparse.ArgumentParser) -> None:
    """``--input``, ``--seed`` and the image options."""
    parser.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE",
                        help="input data instead of random values (repeatable): FILE.npz (inputs by name), "
                             "NAME=FILE.npy (one input; NAME may be left out for a one-input model) or "
                             "NAME=IMAGE.jpg (decoded with MXNet, resized to the input's height and width); "
                             "e.g. --input data=face.jpg")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random inputs (default 0); random integers index in range, "
                             "probabilities lie in [0, 1], other floats in [-1, 1]; e.g. --seed 7")
    parser.add_argument("--image-layout", choices=("NCHW", "NHWC"), default="NCHW",
                        help="layout of an image input (default NCHW); e.g. --image-layout NHWC")
    parser.add_argument("--channel-order", choices=("RGB", "BGR"), default="RGB",
                        help="channel order of an image input (default RGB; MTCNN and Caffe models use BGR: "
                             "e.g. --channel-order BGR)")
    parser.add_argument("--mean", type=_floats, default=(0.0,), metavar="M[,M,M]",
                        help="subtracted from 0..255 pixels, one value or one per channel in --channel-order "
                             "(default 0); e.g. --mean 127.5")
    parser.add_argument("--std", type=_floats, default=(1.0,), metavar="S[,S,S]",
                        help="pixels are divided by it after --mean (default 1); e.g. --std 128 gives MTCNN's "
                             "(x - 127.5) * 0.0078125")


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def image_options(args: argparse.Namespace) -> ImageOptions:
    return ImageOptions(layout=getattr(args, "image_layout", "NCHW"), channel_order=getattr(args, "channel_order", "RGB"),
                        mean=tuple(getattr(args, "mean", (0.0,))), std=tuple(getattr(args, "std", (1.0,))))


def inputs_from_args(args: argparse.Namespace, specs: Sequence[InputSpec]) -> PreparedInputs:
    """Inputs for ``specs`` as the flags of :func:`add_input_flags` ask."""
    if not specs:
        raise ShapeError("the model has no inputs to feed")
    return prepare_inputs(specs, list(getattr(args, "input", []) or []), seed=getattr(args, "seed", 0),
                          image=image_options(args))
