"""Attribute handling shared by the sliding-window ops (Conv, ConvTranspose, the pools).

ONNX describes padding as ``auto_pad`` plus a ``pads`` list ``[b1, b2, ..., e1, e2, ...]``;
PyTorch wants one symmetric amount per axis. These helpers resolve the ONNX form to explicit
(begin, end) pairs at conversion time whenever the spatial input shape is known, so that the
emitted code is a plain ``F.conv2d``/``F.max_pool2d`` call with static arguments.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn.functional as F

from ..runtime import conv as rt

__all__ = ["WindowArgs", "window_args", "same_pads", "apply_pads", "torch_pad_list", "conv_fn", "pool_dims"]


class WindowArgs:
    """Kernel, strides, dilations and resolved padding of one sliding-window node."""

    def __init__(self, kernel: list[int], strides: list[int], dilations: list[int],
                 begin: Optional[list[int]], end: Optional[list[int]], auto_pad: str) -> None:
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.begin = begin  # None: SAME padding that depends on a run-time input shape
        self.end = end
        self.auto_pad = auto_pad

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def static(self) -> bool:
        return self.begin is not None

    @property
    def symmetric(self) -> bool:
        return self.static and list(self.begin) == list(self.end)


def same_pads(in_sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int], lower: bool) -> tuple[list[int], list[int]]:
    """ONNX SAME_UPPER/SAME_LOWER: output = ceil(in / stride); the odd pad goes to the end (upper)."""
    begin, end = [], []
    for n, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small = total // 2
        begin.append(total - small if lower else small)
        end.append(small if lower else total - small)
    return begin, end


def window_args(ctx, kernel: Sequence[int], spatial: Optional[Sequence[Optional[int]]]) -> WindowArgs:
    """Read strides/dilations/pads/auto_pad of ``ctx`` for a window of ``kernel``."""
    r = len(kernel)
    strides = [int(v) for v in (ctx.attr("strides", None) or [1] * r)]
    dilations = [int(v) for v in (ctx.attr("dilations", None) or [1] * r)]
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    kernel = [int(k) for k in kernel]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if spatial is None or any(v is None for v in spatial):
            return WindowArgs(kernel, strides, dilations, None, None, auto_pad)
        begin, end = same_pads(spatial, kernel, strides, dilations, auto_pad == "SAME_LOWER")
    elif auto_pad == "VALID":
        begin, end = [0] * r, [0] * r
    else:
        pads = [int(v) for v in (ctx.attr("pads", None) or [0] * (2 * r))]
        begin, end = pads[:r], pads[r:]
    return WindowArgs(kernel, strides, dilations, begin, end, auto_pad)


def torch_pad_list(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """(begin, end) per spatial axis -> F.pad's list, last axis first."""
    out: list[int] = []
    for b, e in zip(reversed(list(begin)), reversed(list(end))):
        out += [int(b), int(e)]
    return out


def apply_pads(ctx, x, args: WindowArgs, value: float = 0.0):
    """Pad ``x`` explicitly (asymmetric or run-time SAME padding); returns the padded handle."""
    if not args.static:
        return ctx.call(rt.pad_same, x, args.kernel, args.strides, args.dilations,
                        args.auto_pad == "SAME_LOWER", value)
    if not any(args.begin) and not any(args.end):
        return x
    return ctx.call(F.pad, x, torch_pad_list(args.begin, args.end), "constant", value)


def conv_fn(rank: int, transpose: bool = False):
    table = ({1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d} if transpose
             else {1: F.conv1d, 2: F.conv2d, 3: F.conv3d})
    return table.get(rank)


def pool_dims(ctx, index: int = 0) -> Optional[list[Optional[int]]]:
    """Spatial dims of input ``index`` (None if the rank is unknown)."""
    shape = ctx.shape(index)
    return None if shape is None else list(shape[2:])
