"""Cast, CastLike and BitCast.

Every ONNX element type with a torch dtype is supported, float8 included (with the ``saturate``
rules of the ONNX spec); strings and the 2/4-bit, float6 and float8e8m0 types have no torch dtype
and are refused with a clear UnsupportedOpError.
"""
from __future__ import annotations

from typing import Optional

import onnx
import torch

from ..builder import Handle, NodeContext
from ..dtypes import torch_dtype
from ..registry import converter
from ..runtime import elementwise as rt

_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)


def _type_name(onnx_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(int(onnx_type))
    except ValueError:
        return str(onnx_type)


def target_dtype(ctx: NodeContext, to: object) -> torch.dtype:
    """torch dtype for the ``to`` attribute (an enum value, or a type name before opset 6)."""
    if isinstance(to, (str, bytes)):
        name = to.decode() if isinstance(to, bytes) else to
        try:
            to = onnx.TensorProto.DataType.Value(name.upper())
        except ValueError:
            raise ctx.fail(f"unknown data type {name!r} in 'to'") from None
    dtype = torch_dtype(int(to))
    if dtype is None:
        raise ctx.unsupported(f"{_type_name(int(to))} tensors have no PyTorch dtype")
    return dtype


def _source_dtype(ctx: NodeContext, i: int = 0) -> Optional[torch.dtype]:
    value = ctx.node.inputs[i]
    if value is not None and value.dtype is not None and torch_dtype(value.dtype.value) is None:
        raise ctx.unsupported(f"{_type_name(value.dtype.value)} tensors have no PyTorch dtype")
    return ctx.dtype(i)


def emit_cast(ctx: NodeContext, x: Handle, src: Optional[torch.dtype], dst: torch.dtype, saturate: bool) -> Handle:
    """``x`` converted to ``dst``: a plain ``.to`` unless float8 rules apply."""
    if src == dst:
        return x
    if src is None or dst in _FLOAT8 or src in _FLOAT8:
        return ctx.call(rt.cast, x, dst, saturate)
    return ctx.method("to", x, dst)


@converter("Cast", since=1)
def cast(ctx: NodeContext) -> Handle:
    """A Cast whose output the graph declares of another type is refused: the graph contradicts
    itself (onnxruntime refuses to load it), and following either side makes a module that fails
    at run time where the two types meet (onnxconverter-common's float16 conversion can write
    ``Cast(to=FLOAT)`` into a value it declares float16)."""
    to = ctx.attr("to")
    dst = target_dtype(ctx, to)
    declared = ctx.node.outputs[0].dtype if ctx.node.outputs else None
    if declared is not None and torch_dtype(declared.value) not in (None, dst):
        named = to.decode() if isinstance(to, bytes) else to if isinstance(to, str) else _type_name(int(to))
        raise ctx.fail(f"casts to {named.upper()} but the graph declares its output "
                       f"{ctx.node.outputs[0].name!r} as {_type_name(declared.value)}: the graph contradicts itself "
                       "(onnxruntime refuses to load it too); correct the declaration or the tool that wrote it")
    src = _source_dtype(ctx)
    return emit_cast(ctx, ctx.input(0), src, dst, bool(ctx.attr("saturate", 1)))


@converter("CastLike", since=15)
def cast_like(ctx: NodeContext) -> Handle:
    """Cast input 0 to the dtype of input 1."""
    src = _source_dtype(ctx, 0)
    dst = _source_dtype(ctx, 1)
    saturate = bool(ctx.attr("saturate", 1))
    if dst is None:
        return ctx.call(rt.cast_like, ctx.input(0), ctx.input(1), saturate)
    return emit_cast(ctx, ctx.input(0), src, dst, saturate)


@converter("BitCast", since=26)
def bit_cast(ctx: NodeContext) -> Handle:
    """Reinterpret the bits as another type of the same width."""
    dst = target_dtype(ctx, ctx.attr("to"))
    src = _source_dtype(ctx)
    if src is not None and src.itemsize != dst.itemsize:
        raise ctx.fail(f"BitCast from {src} to {dst} changes the bit width")
    if src == dst:
        return ctx.input(0)
    return ctx.call(rt.bit_cast, ctx.input(0), dst)
