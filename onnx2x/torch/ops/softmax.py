"""Softmax, LogSoftmax, Hardmax, SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss."""
from __future__ import annotations

from ..registry import converter
from ..runtime import softmax as rt

_KIND = {"Softmax": "softmax", "LogSoftmax": "logsoftmax", "Hardmax": "hardmax"}


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


@converter(tuple(_KIND), since=1)
def softmax_2d(ctx):
    """Before opset 13 the input is coerced to 2-D at ``axis`` (default 1)."""
    return ctx.call(rt.softmax_2d, ctx.input(0), _KIND[ctx.op_type], int(ctx.attr("axis", 1)))


@converter(tuple(_KIND), since=13)
def softmax_axis(ctx):
    return ctx.call(rt.softmax_axis, ctx.input(0), _KIND[ctx.op_type], int(ctx.attr("axis", -1)))


def _loss_args(ctx):
    ignore = ctx.attr("ignore_index", None)
    return (ctx.input(2), None if ignore is None else int(ignore), _text(ctx.attr("reduction", None), "mean"))


@converter("NegativeLogLikelihoodLoss", since=12)
def nll_loss(ctx):
    return ctx.call(rt.nll_loss, ctx.input(0), ctx.input(1), *_loss_args(ctx))


@converter("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy(ctx):
    both = ctx.call(rt.softmax_cross_entropy, ctx.input(0), ctx.input(1), *_loss_args(ctx))
    loss = ctx.getitem(both, 0)
    if ctx.num_outputs > 1 and ctx.node.outputs[1].name:
        return loss, ctx.getitem(both, 1)
    return loss
