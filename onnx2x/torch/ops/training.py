"""Ops of the ai.onnx.preview.training domain: the optimizers Adagrad/Adam/Momentum (inputs R, T,
then groups of tensors X..., G..., state... for any number of parameters) and Gradient."""
from __future__ import annotations

from typing import Any

import torch.fx as fx

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


def _forward_slice(ctx: NodeContext, xs: list[fx.Node], y: fx.Node) -> tuple[fx.GraphModule, list[fx.Node]]:
    """Copy the fx nodes computing ``y`` from ``xs`` into a module ``f(*xs, *others)``.

    ``others`` are the other run-time values that slice reads (graph inputs, captured values).
    """
    needed: set[fx.Node] = set()
    stack = [y]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        if n not in xs:
            stack.extend(n.all_input_nodes)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {x: graph.placeholder(f"x{i}") for i, x in enumerate(xs)}
    others: list[fx.Node] = []
    for n in ctx.builder.graph.nodes:
        if n not in needed or n in env:
            continue
        if n.op == "placeholder":
            env[n] = graph.placeholder(f"other{len(others)}")
            others.append(n)
        else:
            env[n] = graph.node_copy(n, lambda a: env[a])
    graph.output(env[y])
    return fx.GraphModule(ctx.builder.root, graph, class_name="GradientSlice"), others


@converter("Gradient", since=1, domain=DOMAIN)
def gradient(ctx: NodeContext) -> Any:
    by_name = {v.name: h for v, h in ctx.builder.env.items()}
    xs = [by_name.get(name) for name in ctx.attr("xs")]
    y = by_name.get(ctx.attr("y"))
    if not all(isinstance(h, fx.Node) for h in xs + [y]):
        raise ctx.unsupported("Gradient needs xs and y computed at run time (not constants)")
    module, others = _forward_slice(ctx, xs, y)
    target = ctx.builder.graph.get_attr(ctx.builder.add_submodule(module, f"{ctx.name}_forward"))
    res = ctx.call(rt.gradient, target, xs, others)
    return _outputs(ctx, res)
