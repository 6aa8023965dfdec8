"""ONNX Reduce*, Arg* and Cum* semantics on top of torch reductions.

Why a helper: ONNX reductions keep the input dtype (torch promotes int sums to int64), define
identity values for empty inputs (torch's amax/amin refuse them), accept several axes for
ReduceProd (torch.prod takes one) and may receive their axes only at run time.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch

AxesArg = Union[None, Sequence[int], torch.Tensor]


def _axes_list(axes: AxesArg) -> Optional[List[int]]:
    if axes is None:
        return None
    if isinstance(axes, torch.Tensor):
        return [int(a) for a in axes.reshape(-1).tolist()]
    return [int(a) for a in axes]


def resolve_axes(axes: AxesArg, rank: int, noop_with_empty_axes: bool) -> Optional[List[int]]:
    """Sorted non-negative axes to reduce; None means "no-op" (return the input)."""
    lst = _axes_list(axes)
    if lst is None or len(lst) == 0:
        if noop_with_empty_axes:
            return None
        return list(range(rank))
    out = sorted({a + rank if a < 0 else a for a in lst})
    for a in out:
        if a < 0 or a >= max(rank, 1):
            raise ValueError(f"reduction axis out of range for rank {rank}: {lst}")
    return out


def _out_shape(shape: Sequence[int], dims: Sequence[int], keepdims: bool) -> List[int]:
    out = []
    for i, s in enumerate(shape):
        if i in dims:
            if keepdims:
                out.append(1)
        else:
            out.append(int(s))
    return out


def _extreme(dtype: torch.dtype, largest: bool) -> Union[bool, int, float]:
    if dtype == torch.bool:
        return largest
    if dtype.is_floating_point:
        return math.inf if largest else -math.inf
    info = torch.iinfo(dtype)
    return info.max if largest else info.min


def _sum(x: torch.Tensor, dims: List[int], keepdims: bool) -> torch.Tensor:
    if x.dtype == torch.bool:
        return torch.sum(x, dim=dims, keepdim=keepdims).to(torch.bool)
    return torch.sum(x, dim=dims, keepdim=keepdims, dtype=x.dtype)


def _prod(x: torch.Tensor, dims: List[int], keepdims: bool) -> torch.Tensor:
    y = x
    for d in sorted(dims, reverse=True):
        y = torch.prod(y, dim=d, keepdim=keepdims, dtype=x.dtype)
    return y


def reduce(x: torch.Tensor, kind: str, axes: AxesArg = None, keepdims: bool = True,
           noop_with_empty_axes: bool = False) -> torch.Tensor:
    """One ONNX reduction. ``kind``: sum, mean, max, min, prod, l1, l2, logsum, logsumexp, sumsquare."""
    rank = x.dim()
    dims = resolve_axes(axes, rank, noop_with_empty_axes)
    if dims is None:
        return x
    if rank == 0:
        y = reduce(x.reshape(1), kind, [0], False, False)
        return y.reshape(())
    if kind in ("max", "min"):
        if x.numel() == 0 and any(x.shape[d] == 0 for d in dims):
            fill = _extreme(x.dtype, kind == "min")
            return torch.full(_out_shape(x.shape, dims, keepdims), fill, dtype=x.dtype, device=x.device)
        fn = torch.amax if kind == "max" else torch.amin
        return fn(x, dim=dims, keepdim=keepdims)
    if kind == "sum":
        return _sum(x, dims, keepdims)
    if kind == "prod":
        return _prod(x, dims, keepdims)
    if kind == "sumsquare":
        return _sum(x * x, dims, keepdims)
    if kind == "l1":
        return _sum(torch.abs(x), dims, keepdims)
    if kind == "mean":
        if x.dtype.is_floating_point or x.dtype.is_complex:
            return torch.mean(x, dim=dims, keepdim=keepdims)
        return torch.mean(x.to(torch.float64), dim=dims, keepdim=keepdims).to(x.dtype)
    if kind == "l2":
        if x.dtype.is_floating_point:
            return torch.sqrt(_sum(x * x, dims, keepdims))
        xd = x.to(torch.float64)
        return torch.sqrt(torch.sum(xd * xd, dim=dims, keepdim=keepdims)).to(x.dtype)
    if kind == "logsum":
        if x.dtype.is_floating_point:
            return torch.log(_sum(x, dims, keepdims))
        return torch.log(torch.sum(x.to(torch.float64), dim=dims, keepdim=keepdims)).to(x.dtype)
    if kind == "logsumexp":
        if x.dtype.is_floating_point:
            return torch.logsumexp(x, dim=dims, keepdim=keepdims)
        return torch.logsumexp(x.to(torch.float64), dim=dims, keepdim=keepdims).to(x.dtype)
    raise ValueError(f"unknown reduction {kind!r}")


def arg_extreme(x: torch.Tensor, axis: int, keepdims: bool, select_last_index: bool,
                largest: bool) -> torch.Tensor:
    """ArgMax/ArgMin; ties resolve to the first index, or the last with ``select_last_index``."""
    axis = axis + x.dim() if axis < 0 else axis
    fn = torch.argmax if largest else torch.argmin
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    if not select_last_index:
        return fn(x, dim=axis, keepdim=keepdims)
    flipped = torch.flip(x, dims=[axis])
    idx = fn(flipped, dim=axis, keepdim=keepdims)
    return (x.shape[axis] - 1) - idx


def cumulative(x: torch.Tensor, axis: Union[int, torch.Tensor], exclusive: bool, reverse: bool,
               product: bool) -> torch.Tensor:
    """CumSum/CumProd with ONNX's ``exclusive`` and ``reverse`` flags, keeping the input dtype."""
    if isinstance(axis, torch.Tensor):
        axis = int(axis.reshape(-1)[0].item())
    axis = axis + x.dim() if axis < 0 else axis
    y = torch.flip(x, dims=[axis]) if reverse else x
    if exclusive and y.shape[axis] > 0:
        n = y.shape[axis]
        ident = torch.ones_like(y.narrow(axis, 0, 1)) if product else torch.zeros_like(y.narrow(axis, 0, 1))
        y = torch.cat([ident, y.narrow(axis, 0, max(n - 1, 0))], dim=axis)
    if product:
        y = torch.cumprod(y, dim=axis, dtype=x.dtype)
    else:
        y = torch.cumsum(y, dim=axis, dtype=x.dtype)
    return torch.flip(y, dims=[axis]) if reverse else y
