"""Control flow: If, Loop, Scan, SequenceMap.

Whatever is decidable at conversion time is resolved here: an If whose condition is a constant
is replaced by its branch, and a Loop/SequenceMap with a small known trip count is unrolled into
the surrounding graph. Otherwise the bodies become submodules run by ``runtime/control_flow.py``.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from common.ir import onnx_ir as ir

from ..builder import NodeContext
from ..registry import converter
from ..runtime import control_flow as rt

UNROLL_MAX_TRIPS = 64
UNROLL_MAX_NODES = 2000  # trips x body nodes


def body_module(ctx: NodeContext, graph: ir.Graph, hint: str) -> tuple[Any, list[Any]]:
    """Convert ``graph`` to a submodule; returns a get_attr handle to it and the captured handles."""
    gm, captures = ctx.subgraph_module(graph, as_tuple=True)
    name = ctx.builder.add_submodule(gm, f"{ctx.name}_{hint}")
    return ctx.builder.graph.get_attr(name), captures


def _scan_spec(ctx: NodeContext, j: int, drop_axis: int = 0) -> Optional[tuple]:
    dtype = ctx.output_dtype(j)
    shape = ctx.output_shape(j)
    if dtype is None or shape is None or any(d is None for d in shape):
        return None
    tail = list(shape)
    del tail[drop_axis]
    return dtype, tuple(int(d) for d in tail)


def _as_bool(handle: Any) -> Optional[bool]:
    if isinstance(handle, torch.Tensor):
        return bool(handle.reshape(-1)[0]) if handle.numel() else None
    return None


# --- If ----------------------------------------------------------------------------------------
@converter("If", since=1)
def if_op(ctx: NodeContext) -> Any:
    then_g, else_g = ctx.attr("then_branch"), ctx.attr("else_branch")
    cond = ctx.const(0)
    if cond is not None:
        chosen = then_g if bool(np.asarray(cond).reshape(-1)[0]) else else_g
        return tuple(ctx.inline_subgraph(chosen, []))
    then_mod, then_caps = body_module(ctx, then_g, "then")
    else_mod, else_caps = body_module(ctx, else_g, "else")
    res = ctx.call(rt.run_if, ctx.input(0), then_mod, else_mod, then_caps, else_caps)
    return tuple(ctx.getitem(res, j) for j in range(ctx.num_outputs))


# --- Loop --------------------------------------------------------------------------------------
def _cond_passes_through(body: ir.Graph) -> bool:
    """True when the body's condition output is a constant or a copy of its condition input."""
    out = body.outputs[0]
    seen = 0
    while seen < 8:
        seen += 1
        if out is body.inputs[1] or out.const_value is not None:
            return True
        producer = out.producer()
        if producer is None:
            return False
        if producer.op_type == "Constant":
            return True
        if producer.op_type != "Identity":
            return False
        out = producer.inputs[0]
    return False


def _try_unroll_loop(ctx: NodeContext, body: ir.Graph, n_carried: int) -> Optional[tuple]:
    trips = ctx.const_ints(0) if ctx.has_input(0) else None
    if trips is None:
        return None
    trips = trips[0]
    cond0 = _as_bool(ctx.input(1)) if ctx.has_input(1) else True
    if cond0 is None or trips > UNROLL_MAX_TRIPS or trips * max(len(body), 1) > UNROLL_MAX_NODES:
        return None
    if not _cond_passes_through(body):
        return None
    n_scan = len(body.outputs) - 1 - n_carried
    specs = [_scan_spec(ctx, n_carried + k) for k in range(n_scan)]
    if (trips == 0 or not cond0) and any(s is None for s in specs):
        return None
    cond: Any = torch.tensor(bool(cond0))
    values = [ctx.input(2 + k) for k in range(n_carried)]
    scans: list[list[Any]] = [[] for _ in range(n_scan)]
    i = 0
    while i < trips and _as_bool(cond):
        outs = ctx.inline_subgraph(body, [torch.tensor(i, dtype=torch.int64), cond, *values])
        cond = outs[0]
        if _as_bool(cond) is None:
            raise ctx.fail("unrolled Loop condition became dynamic")
        values = list(outs[1:1 + n_carried])
        for k, y in enumerate(outs[1 + n_carried:]):
            scans[k].append(y)
        i += 1
    stacked = []
    for k, items in enumerate(scans):
        if items:
            stacked.append(ctx.call(torch.stack, items, 0))
        else:
            dtype, tail = specs[k]
            stacked.append(torch.zeros((0,) + tail, dtype=dtype))
    return tuple(values) + tuple(stacked)


@converter("Loop", since=1)
def loop(ctx: NodeContext) -> Any:
    body = ctx.attr("body")
    n_carried = ctx.num_inputs - 2
    unrolled = _try_unroll_loop(ctx, body, n_carried)
    if unrolled is not None:
        return unrolled
    n_scan = len(body.outputs) - 1 - n_carried
    mod, caps = body_module(ctx, body, "body")
    carried = [ctx.input(2 + k) for k in range(n_carried)]
    specs = [_scan_spec(ctx, n_carried + k) for k in range(n_scan)]
    res = ctx.call(rt.run_loop, mod, ctx.input(0), ctx.input(1), carried, caps, specs)
    return tuple(ctx.getitem(res, j) for j in range(ctx.num_outputs))


# --- Scan --------------------------------------------------------------------------------------
@converter("Scan", since=8)
def scan8(ctx: NodeContext) -> Any:
    body = ctx.attr("body")
    n_scan_in = int(ctx.attr("num_scan_inputs"))
    n_state = ctx.num_inputs - 1 - n_scan_in
    directions = [int(d) for d in ctx.attr("directions", [0] * n_scan_in)]
    states = [ctx.input(1 + k) for k in range(n_state)]
    inputs = [ctx.input(1 + n_state + k) for k in range(n_scan_in)]
    n_scan_out = len(body.outputs) - n_state
    mod, caps = body_module(ctx, body, "body")
    res = ctx.call(rt.run_scan8, mod, ctx.input(0), states, inputs, caps, directions, n_scan_out)
    return tuple(ctx.getitem(res, j) for j in range(ctx.num_outputs))


@converter("Scan", since=9)
def scan(ctx: NodeContext) -> Any:
    body = ctx.attr("body")
    n_scan_in = int(ctx.attr("num_scan_inputs"))
    n_state = ctx.num_inputs - n_scan_in
    n_scan_out = len(body.outputs) - n_state
    in_axes = [int(a) for a in ctx.attr("scan_input_axes", [0] * n_scan_in)]
    in_rev = [int(d) for d in ctx.attr("scan_input_directions", [0] * n_scan_in)]
    out_axes = [int(a) for a in ctx.attr("scan_output_axes", [0] * n_scan_out)]
    out_rev = [int(d) for d in ctx.attr("scan_output_directions", [0] * n_scan_out)]
    for k in range(n_scan_in):
        rank = ctx.rank(n_state + k)
        if in_axes[k] < 0 and rank is not None:
            in_axes[k] += rank
    for k in range(n_scan_out):
        shape = ctx.output_shape(n_state + k)
        if out_axes[k] < 0 and shape is not None:
            out_axes[k] += len(shape)
    specs = [_scan_spec(ctx, n_state + k, out_axes[k]) if out_axes[k] >= 0 else None for k in range(n_scan_out)]
    states = [ctx.input(k) for k in range(n_state)]
    inputs = [ctx.input(n_state + k) for k in range(n_scan_in)]
    mod, caps = body_module(ctx, body, "body")
    res = ctx.call(rt.run_scan, mod, states, inputs, caps, in_axes, in_rev, out_axes, out_rev, specs)
    return tuple(ctx.getitem(res, j) for j in range(ctx.num_outputs))


# --- SequenceMap -------------------------------------------------------------------------------
@converter("SequenceMap", since=17)
def sequence_map(ctx: NodeContext) -> Any:
    body = ctx.attr("body")
    args = [ctx.input(i) for i in range(ctx.num_inputs)]
    is_seq = [isinstance(v.type, ir.SequenceType) if v is not None else False for v in ctx.node.inputs]
    is_seq = [s or isinstance(a, list) for s, a in zip(is_seq, args)]
    n_out = len(body.outputs)
    seq_args = [a for a, s in zip(args, is_seq) if s]
    if all(isinstance(a, list) for a in seq_args) and len(body) * len(seq_args[0]) <= UNROLL_MAX_NODES:
        outs: list[list[Any]] = [[] for _ in range(n_out)]
        for i in range(len(seq_args[0])):
            res = ctx.inline_subgraph(body, [a[i] if s else a for a, s in zip(args, is_seq)])
            for k in range(n_out):
                outs[k].append(res[k])
        return tuple(outs)
    mod, caps = body_module(ctx, body, "body")
    res = ctx.call(rt.run_sequence_map, mod, args, is_seq, caps, n_out)
    return tuple(ctx.getitem(res, j) for j in range(ctx.num_outputs))
