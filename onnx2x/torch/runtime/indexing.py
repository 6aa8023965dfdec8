"""Run-time gather/scatter/slice/select helpers with ONNX index semantics (negative indices,
ONNX reductions, clamped slices)."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
import torch

_SIGNED_VIEW = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}
_REDUCE = {"mul": "prod", "max": "amax", "min": "amin", "add": "sum"}


def _wrap(indices: torch.Tensor, size: int) -> torch.Tensor:
    indices = indices.to(torch.int64)
    return torch.where(indices < 0, indices + size, indices)


def gather(data: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Gather: ``data[:, ..., indices, ...]`` with the index tensor at ``axis`` (negative:
    from the end, for data whose rank was known only at run time)."""
    if indices.dtype != torch.int64:
        indices = indices.to(torch.int64)
    if axis < 0:
        axis += data.dim()
    if axis == 0:
        if data.dim() > 1 and _whole_rows_pay(data, indices):
            rows = torch.index_select(data, 0, _wrap(indices.reshape(-1), data.shape[0]))
            return rows.reshape(indices.shape + data.shape[1:])
        return data[indices]  # an embedding lookup: plain indexing costs a third less than with a tuple
    return data[(slice(None),) * axis + (indices,)]


# Advanced indexing copies a gathered row element by element; index_select copies whole rows.
# From about this many gathered elements the copy outweighs index_select's extra index ops (one
# thread: word embeddings of 8 x 128 tokens, 768 wide: 1.44 ms against 0.15 ms; a mixture of
# experts' per-token expert weights, 32 x 64 x 128: 174 us against 43 us; 16 tokens: 4.5 us
# against 18 us, so small lookups keep plain indexing).
WHOLE_ROWS_MIN_ELEMENTS = 32768


def _whole_rows_pay(data: torch.Tensor, indices: torch.Tensor) -> bool:
    """Eager, plain tensors with enough gathered elements (tracers and exporters see plain indexing;
    a 0-d index selects a view, no copy at all)."""
    if type(indices) is not torch.Tensor or type(data) not in (torch.Tensor, torch.nn.Parameter) or indices.dim() == 0:
        return False
    if indices.numel() * (data.numel() // max(int(data.shape[0]), 1)) < WHOLE_ROWS_MIN_ELEMENTS:
        return False
    return not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling())


def gather_elements(data: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.gather(data, axis, _wrap(indices, data.shape[axis]))


def gather_nd(data: torch.Tensor, indices: torch.Tensor, batch_dims: int = 0) -> torch.Tensor:
    """ONNX GatherND: the last index dim addresses the leading data dims after ``batch_dims``."""
    indices = indices.to(torch.int64)
    m = indices.shape[-1]
    if m == 1 and batch_dims == 0:  # whole slices of the first axis (a mixture of experts' weights)
        return gather(data, indices[..., 0], 0)
    inner = indices.dim() - 1 - batch_dims  # index dims besides batch and the tuple dim
    index: list = []
    for i in range(batch_dims):
        n = data.shape[i]
        shape = [1] * batch_dims + [1] * inner
        shape[i] = n
        index.append(torch.arange(n).reshape(shape))
    for j in range(m):
        index.append(indices[..., j])
    return data[tuple(index)]


def scatter_elements(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, axis: int,
                     reduction: str = "none") -> torch.Tensor:
    """ONNX ScatterElements / Scatter with an optional reduction."""
    idx = _wrap(indices, data.shape[axis])
    if reduction == "none":
        return torch.scatter(data, axis, idx, updates)
    if reduction == "add":
        return torch.scatter_add(data, axis, idx, updates)
    return torch.scatter_reduce(data, axis, idx, updates, _REDUCE[reduction], include_self=True)


def scatter_nd(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor,
               reduction: str = "none") -> torch.Tensor:
    """ONNX ScatterND: rows addressed by index tuples are replaced or reduced into."""
    indices = indices.to(torch.int64)
    m = indices.shape[-1]
    lead = data.shape[:m]
    rest = data.shape[m:]
    linear = torch.zeros(indices.shape[:-1], dtype=torch.int64)
    for j in range(m):
        linear = linear * lead[j] + _wrap(indices[..., j], lead[j])
    linear = linear.reshape(-1)
    flat = data.reshape((-1,) + tuple(rest)).reshape(data.shape[:m].numel(), -1)
    upd = updates.reshape(linear.shape[0], -1)
    index = linear.unsqueeze(1).expand(upd.shape)
    if reduction == "none":
        out = flat.scatter(0, index, upd)
    elif reduction == "add":
        out = flat.scatter_add(0, index, upd)
    else:
        out = flat.scatter_reduce(0, index, upd, _REDUCE[reduction], include_self=True)
    return out.reshape(data.shape)


def _slice_axis(x: torch.Tensor, axis: int, start: int, end: int, step: int) -> torch.Tensor:
    dim = x.shape[axis]
    if step > 0:
        start = max(0, min(dim, start + dim if start < 0 else start))
        end = max(0, min(dim, end + dim if end < 0 else end))
        return x[(slice(None),) * axis + (slice(start, end, step),)]
    start = max(-1, min(dim - 1, start + dim if start < 0 else start))
    end = max(-1, min(dim - 1, end + dim if end < 0 else end))
    if start <= end:
        return x[(slice(None),) * axis + (slice(0, 0),)]
    flipped = torch.flip(x, [axis])
    return flipped[(slice(None),) * axis + (slice(dim - 1 - start, dim - 1 - end, -step),)]


def slice_static(x: torch.Tensor, starts: List[int], ends: List[int], axes: List[int],
                 steps: List[int]) -> torch.Tensor:
    """ONNX Slice whose parameters are known but whose dims are resolved at run time."""
    for s, e, a, st in zip(starts, ends, axes, steps):
        x = _slice_axis(x, a + x.dim() if a < 0 else a, s, e, st)
    return x


def slice_dynamic(x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                  axes: Optional[torch.Tensor] = None, steps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ONNX Slice with run-time starts/ends (axes/steps optional)."""
    s = [int(v) for v in starts.tolist()]
    e = [int(v) for v in ends.tolist()]
    a = list(range(len(s))) if axes is None else [int(v) for v in axes.tolist()]
    st = [1] * len(s) if steps is None else [int(v) for v in steps.tolist()]
    return slice_static(x, s, e, a, st)


def split(x: torch.Tensor, sizes: torch.Tensor, axis: int) -> Tuple[torch.Tensor, ...]:
    return torch.split(x, [int(v) for v in sizes.tolist()], axis)


def split_even(x: torch.Tensor, parts: int, axis: int) -> Tuple[torch.Tensor, ...]:
    """Split into ``parts`` chunks of ceil(dim / parts), the last one smaller (ONNX Split-18)."""
    dim = x.shape[axis]
    chunk = -(-dim // parts)
    return torch.split(x, chunk, axis)


def compress(x: torch.Tensor, condition: torch.Tensor, axis: Optional[int]) -> torch.Tensor:
    """ONNX Compress: keep slices where ``condition`` holds (missing trailing entries mean False)."""
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    keep = torch.nonzero(condition.reshape(-1).to(torch.bool)).reshape(-1)
    keep = keep[keep < x.shape[axis]]
    return torch.index_select(x, axis, keep)


def nonzero(x: torch.Tensor) -> torch.Tensor:
    """ONNX NonZero: indices as (rank, count) int64."""
    if x.dim() == 0:
        return torch.zeros((0, int(bool(x))), dtype=torch.int64)
    return torch.nonzero(x).t().contiguous()


def unique(x: torch.Tensor, axis: Optional[int], sorted_: int) -> Tuple[torch.Tensor, torch.Tensor,
                                                                         torch.Tensor, torch.Tensor]:
    """ONNX Unique: values, first-occurrence indices, inverse indices, counts."""
    if axis is None:
        flat = x.reshape(-1)
        y, inverse, counts = torch.unique(flat, sorted=True, return_inverse=True, return_counts=True)
        n = flat.shape[0]
        dim = 0
    else:
        dim = axis + x.dim() if axis < 0 else axis
        y, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True, dim=dim)
        n = x.shape[dim]
    inverse = inverse.reshape(-1)
    positions = torch.arange(n, dtype=torch.int64)
    first = torch.full((counts.shape[0],), n, dtype=torch.int64).scatter_reduce(
        0, inverse, positions, "amin", include_self=True)
    if not sorted_:
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.shape[0], dtype=torch.int64)
        y = torch.index_select(y, dim, order)
        first = first[order]
        counts = counts[order]
        inverse = rank[inverse]
    return y, first, inverse.to(torch.int64), counts.to(torch.int64)


def top_k(x: torch.Tensor, k: int, axis: int, largest: int, sorted_: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """ONNX TopK; equal values keep the lower index first, as the spec requires."""
    k = int(k)
    signed = _SIGNED_VIEW.get(x.dtype)
    if signed is not None:  # few kernels exist for wide unsigned types: sort by value, move bits
        order = torch.argsort(x.to(torch.float64), dim=axis, descending=bool(largest), stable=True)
        idx = order.narrow(axis, 0, k)
        return torch.gather(x.view(signed), axis, idx).view(x.dtype), idx
    order = torch.argsort(x, dim=axis, descending=bool(largest), stable=True)
    idx = order.narrow(axis, 0, k)
    return torch.gather(x, axis, idx), idx


def top_k_dynamic(x: torch.Tensor, k: torch.Tensor, axis: int, largest: int,
                  sorted_: int) -> Tuple[torch.Tensor, torch.Tensor]:
    return top_k(x, int(k.reshape(-1)[0].item()), axis, largest, sorted_)


def reverse_sequence(x: torch.Tensor, lens: torch.Tensor, batch_axis: int, time_axis: int) -> torch.Tensor:
    """ONNX ReverseSequence: reverse the first ``lens[b]`` steps of every batch entry."""
    t = x.shape[time_axis]
    steps = torch.arange(t, dtype=torch.int64).unsqueeze(1)  # (T, 1)
    lens = lens.to(torch.int64).unsqueeze(0)  # (1, B)
    src = torch.where(steps < lens, lens - 1 - steps, steps)  # (T, B)
    if batch_axis < time_axis:
        src = src.t()
    shape = [1] * x.dim()
    shape[time_axis] = src.shape[0 if time_axis < batch_axis else 1]
    shape[batch_axis] = src.shape[1 if time_axis < batch_axis else 0]
    return torch.gather(x, time_axis, src.reshape(shape).expand(x.shape))


def tensor_scatter(past: torch.Tensor, update: torch.Tensor, write_indices: Optional[torch.Tensor],
                   axis: int, circular: bool) -> torch.Tensor:
    """ONNX TensorScatter: write ``update`` into the cache at per-batch offsets along ``axis``."""
    if axis < 0:
        axis += past.dim()
    batch = past.shape[0]
    seq = update.shape[axis]
    start = torch.zeros(batch, dtype=torch.int64) if write_indices is None else write_indices.to(torch.int64)
    pos = start.unsqueeze(1) + torch.arange(seq, dtype=torch.int64).unsqueeze(0)  # (B, S)
    if circular:
        pos = pos % past.shape[axis]
    shape = [1] * past.dim()
    shape[0] = batch
    shape[axis] = seq
    if axis == 0:
        pos = pos[0]
    index = pos.reshape(shape).expand(update.shape)
    return torch.scatter(past, axis, index, update)


def array_feature_extractor(x: Any, indices: torch.Tensor) -> Any:
    """ai.onnx.ml ArrayFeatureExtractor: pick entries of the last axis (a vector gives one row);
    ``x`` may be a string array (a numpy object array: scikit-learn's class labels)."""
    idx = indices.reshape(-1).to(torch.int64)
    if not isinstance(x, torch.Tensor):
        out = np.take(x, idx.numpy(), axis=x.ndim - 1)
        return out.reshape(1, -1) if x.ndim == 1 else out
    out = torch.index_select(x, x.dim() - 1, idx)
    return out.reshape(1, -1) if x.dim() == 1 else out
