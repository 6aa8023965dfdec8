"""Reductions: Reduce*, ArgMax/ArgMin, CumSum/CumProd.

Axes come from the ``axes`` attribute (ReduceSum before opset 13, the others before 18) or from
the second input; a constant input is read at conversion time, a dynamic one is passed through
to the runtime helper.
"""
from __future__ import annotations

from ..registry import converter
from ..runtime import reduce as rt

_KINDS = {
    "ReduceSum": "sum",
    "ReduceMean": "mean",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceL1": "l1",
    "ReduceL2": "l2",
    "ReduceLogSum": "logsum",
    "ReduceLogSumExp": "logsumexp",
    "ReduceSumSquare": "sumsquare",
}


@converter(tuple(_KINDS), since=1)
def reduce_op(ctx):
    """Both the attribute form and the input form of ``axes`` (the node says which it uses)."""
    keepdims = bool(ctx.attr("keepdims", 1))
    noop = bool(ctx.attr("noop_with_empty_axes", 0))
    if ctx.has_attr("axes"):
        axes = [int(a) for a in ctx.attr("axes")]
    elif ctx.has_input(1):
        axes = ctx.const_ints(1)
        if axes is None:
            axes = ctx.input(1)
    else:
        axes = None
    return ctx.call(rt.reduce, ctx.input(0), _KINDS[ctx.op_type], axes, keepdims, noop)


@converter(("ArgMax", "ArgMin"), since=1)
def arg_extreme(ctx):
    axis = int(ctx.attr("axis", 0))
    keepdims = bool(ctx.attr("keepdims", 1))
    last = bool(ctx.attr("select_last_index", 0))
    return ctx.call(rt.arg_extreme, ctx.input(0), axis, keepdims, last, ctx.op_type == "ArgMax")


@converter("CumSum", since=11)
@converter("CumProd", since=26)
def cumulative(ctx):
    axis = ctx.const_ints(1)
    axis_arg = axis[0] if axis is not None else ctx.input(1)
    return ctx.call(rt.cumulative, ctx.input(0), axis_arg, bool(ctx.attr("exclusive", 0)),
                    bool(ctx.attr("reverse", 0)), ctx.op_type == "CumProd")
