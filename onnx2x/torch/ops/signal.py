"""DFT, STFT, HannWindow, HammingWindow, BlackmanWindow and MelWeightMatrix."""
from __future__ import annotations

import torch

from ..dtypes import torch_dtype
from ..registry import converter
from ..runtime import signal as rt


def _length_arg(ctx, i: int):
    if not ctx.has_input(i):
        return None
    value = ctx.const_ints(i)
    return value[0] if value is not None and value else ctx.input(i)


@converter("DFT", since=17)
def dft17(ctx):
    return ctx.call(rt.dft, ctx.input(0), _length_arg(ctx, 1), int(ctx.attr("axis", 1)),
                    bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0)))


@converter("DFT", since=20)
def dft20(ctx):
    axis = _length_arg(ctx, 2) if ctx.has_input(2) else -2
    return ctx.call(rt.dft, ctx.input(0), _length_arg(ctx, 1), axis,
                    bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0)))


@converter("STFT", since=17)
def stft(ctx):
    return ctx.call(rt.stft, ctx.input(0), _length_arg(ctx, 1), ctx.input(2), _length_arg(ctx, 3),
                    bool(ctx.attr("onesided", 1)))


def _out_dtype(ctx, default: int = 1) -> torch.dtype:
    code = int(ctx.attr("output_datatype", default))
    dtype = torch_dtype(code)
    if dtype is None:
        raise ctx.unsupported(f"output_datatype={code}: PyTorch has no such dtype")
    return dtype


def _window(kind: str):
    def convert(ctx):
        return ctx.call(rt.window, kind, _length_arg(ctx, 0), bool(ctx.attr("periodic", 1)), _out_dtype(ctx))
    convert.__name__ = f"{kind}_window"
    return convert


converter("HannWindow", since=17)(_window("hann"))
converter("HammingWindow", since=17)(_window("hamming"))
converter("BlackmanWindow", since=17)(_window("blackman"))


@converter("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx):
    return ctx.call(rt.mel_weight_matrix, *[ctx.input(i) for i in range(5)], _out_dtype(ctx))
