"""Optimizer ops of the ai.onnx.preview.training domain: inputs are R, T, then groups of tensors
(X..., G..., state...) for any number of parameters."""
from __future__ import annotations

from typing import Any

from ..builder import NodeContext
from ..registry import converter
from ..runtime import training as rt

DOMAIN = "ai.onnx.preview.training"


def _groups(ctx: NodeContext, n_groups: int) -> list[list[Any]]:
    rest = [ctx.input(i) for i in range(2, ctx.num_inputs)]
    n = len(rest) // n_groups
    if n * n_groups != len(rest):
        raise ctx.fail(f"expected a multiple of {n_groups} inputs after R and T, got {len(rest)}")
    return [rest[k * n:(k + 1) * n] for k in range(n_groups)]


def _outputs(ctx: NodeContext, res: Any) -> tuple:
    return tuple(ctx.getitem(res, j) for j in range(ctx.num_outputs))


@converter("Adagrad", since=1, domain=DOMAIN)
def adagrad(ctx: NodeContext) -> Any:
    xs, gs, hs = _groups(ctx, 3)
    res = ctx.call(rt.adagrad, ctx.input(0), ctx.input(1), xs, gs, hs, float(ctx.attr("decay_factor", 0.0)),
                   float(ctx.attr("epsilon", 1e-6)), float(ctx.attr("norm_coefficient", 0.0)))
    return _outputs(ctx, res)


@converter("Adam", since=1, domain=DOMAIN)
def adam(ctx: NodeContext) -> Any:
    xs, gs, vs, hs = _groups(ctx, 4)
    res = ctx.call(rt.adam, ctx.input(0), ctx.input(1), xs, gs, vs, hs, float(ctx.attr("alpha", 0.9)),
                   float(ctx.attr("beta", 0.999)), float(ctx.attr("epsilon", 1e-6)),
                   float(ctx.attr("norm_coefficient", 0.0)), float(ctx.attr("norm_coefficient_post", 0.0)))
    return _outputs(ctx, res)


@converter("Momentum", since=1, domain=DOMAIN)
def momentum(ctx: NodeContext) -> Any:
    xs, gs, vs = _groups(ctx, 3)
    mode = ctx.attr("mode", "standard")
    if mode not in ("standard", "nesterov"):
        raise ctx.fail(f"unknown Momentum mode {mode!r}")
    res = ctx.call(rt.momentum, ctx.input(0), ctx.input(1), xs, gs, vs, float(ctx.attr("alpha")),
                   float(ctx.attr("beta")), float(ctx.attr("norm_coefficient")), mode == "nesterov")
    return _outputs(ctx, res)
