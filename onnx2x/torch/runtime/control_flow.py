"""Run-time If / Loop / Scan / SequenceMap.

Bodies are GraphModules whose forward takes the body's formal inputs followed by the outer values
it captures, and returns a tuple of the body outputs.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

Body = Callable[..., Tuple[Any, ...]]
# (dtype, shape of one iteration's output) used to build an empty scan output; None when unknown
ScanSpec = Optional[Tuple[torch.dtype, Tuple[int, ...]]]


def run_if(cond: torch.Tensor, then_branch: Body, else_branch: Body, then_captures: Sequence[Any],
           else_captures: Sequence[Any]) -> Tuple[Any, ...]:
    """ONNX If with a condition known only at run time.

    Under ``torch.compile``/``torch.export`` the branch choice becomes ``torch.cond`` (both branches
    are traced; they must return tensors of matching shapes); in eager mode it is a plain ``if``.
    """
    if torch.compiler.is_compiling():
        n = len(then_captures)
        return tuple(torch.cond(cond.reshape(()).to(torch.bool),
                                lambda *ops: tuple(then_branch(*ops[:n])),
                                lambda *ops: tuple(else_branch(*ops[n:])),
                                tuple(then_captures) + tuple(else_captures)))
    if bool(cond):
        return tuple(then_branch(*then_captures))
    return tuple(else_branch(*else_captures))


def _stack(items: List[torch.Tensor], spec: ScanSpec, axis: int = 0) -> torch.Tensor:
    if items:
        return torch.stack(items, axis)
    if spec is None:
        raise ValueError("a scan output of zero iterations has unknown shape")
    dtype, shape = spec
    out_shape = list(shape)
    out_shape.insert(axis if axis >= 0 else len(out_shape) + 1 + axis, 0)
    return torch.zeros(out_shape, dtype=dtype)


def run_loop(body: Body, trip_count: Optional[torch.Tensor], cond: Optional[torch.Tensor],
             carried: Sequence[Any], captures: Sequence[Any], scan_specs: Sequence[ScanSpec]) -> Tuple[Any, ...]:
    """ONNX Loop: run ``body`` while ``i < trip_count`` and ``cond`` hold; scan outputs are stacked."""
    limit = None if trip_count is None else int(trip_count.reshape(()).item())
    cond_t = torch.tensor(True) if cond is None else cond
    keep = bool(cond_t)
    values = list(carried)
    n = len(values)
    scans: List[List[torch.Tensor]] = [[] for _ in scan_specs]
    i = 0
    while keep and (limit is None or i < limit):
        out = body(torch.tensor(i, dtype=torch.int64), cond_t, *values, *captures)
        cond_t = out[0]
        keep = bool(cond_t)
        values = list(out[1:1 + n])
        for k, y in enumerate(out[1 + n:]):
            scans[k].append(y)
        i += 1
    return tuple(values) + tuple(_stack(s, spec) for s, spec in zip(scans, scan_specs))


def run_scan(body: Body, states: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
             captures: Sequence[Any], in_axes: Sequence[int], in_reverse: Sequence[int],
             out_axes: Sequence[int], out_reverse: Sequence[int],
             scan_specs: Sequence[ScanSpec]) -> Tuple[torch.Tensor, ...]:
    """ONNX Scan (opset 9+): iterate over slices of ``inputs`` carrying ``states``."""
    steps = inputs[0].shape[in_axes[0]] if inputs else 0
    values = list(states)
    n = len(values)
    scans: List[List[torch.Tensor]] = [[] for _ in out_axes]
    for t in range(steps):
        xs = [x.select(a, steps - 1 - t if r else t) for x, a, r in zip(inputs, in_axes, in_reverse)]
        out = body(*values, *xs, *captures)
        values = list(out[:n])
        for k, y in enumerate(out[n:]):
            scans[k].append(y)
    results = []
    for k, ys in enumerate(scans):
        if out_reverse[k]:
            ys = ys[::-1]
        results.append(_stack(ys, scan_specs[k], out_axes[k]))
    return tuple(values) + tuple(results)


def run_scan8(body: Body, seq_lens: Optional[torch.Tensor], states: Sequence[torch.Tensor],
              inputs: Sequence[torch.Tensor], captures: Sequence[Any], in_reverse: Sequence[int],
              n_scan_out: int) -> Tuple[torch.Tensor, ...]:
    """ONNX Scan-8: batch-major; every batch entry scans its own ``seq_lens[b]`` steps."""
    batch = states[0].shape[0] if states else inputs[0].shape[0]
    steps = inputs[0].shape[1] if inputs else 0
    final: List[List[torch.Tensor]] = [[] for _ in states]
    scans: List[List[torch.Tensor]] = [[] for _ in range(n_scan_out)]
    for b in range(batch):
        length = steps if seq_lens is None else int(seq_lens[b])
        xs = [x[b, :length] for x in inputs]
        res = run_scan(body, [s[b] for s in states], xs, captures, [0] * len(xs), in_reverse,
                       [0] * n_scan_out, [0] * n_scan_out, [None] * n_scan_out)
        for k in range(len(states)):
            final[k].append(res[k])
        for k in range(n_scan_out):
            y = res[len(states) + k]
            if y.shape[0] < steps:
                pad = torch.zeros((steps - y.shape[0],) + tuple(y.shape[1:]), dtype=y.dtype)
                y = torch.cat([y, pad], 0)
            scans[k].append(y)
    return tuple(torch.stack(f, 0) for f in final) + tuple(torch.stack(s, 0) for s in scans)


def run_sequence_map(body: Body, args: Sequence[Any], is_sequence: Sequence[bool], captures: Sequence[Any],
                     n_out: int) -> Tuple[List[torch.Tensor], ...]:
    """ONNX SequenceMap: apply ``body`` to the i-th element of every sequence argument."""
    count = len(args[0])
    outs: List[List[torch.Tensor]] = [[] for _ in range(n_out)]
    for i in range(count):
        call = [a[i] if s else a for a, s in zip(args, is_sequence)]
        res = body(*call, *captures)
        for k in range(n_out):
            outs[k].append(res[k])
    return tuple(outs)
