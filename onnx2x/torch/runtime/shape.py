"""Run-time shape manipulation for values whose shape or shape argument is only known at run time."""
from __future__ import annotations

import math
from typing import List, Optional

import torch


def shape_of(x: torch.Tensor, start: int = 0, end: Optional[int] = None) -> torch.Tensor:
    """ONNX Shape: the (sliced) shape as an int64 vector."""
    return torch.tensor(x.shape[start:end], dtype=torch.int64)


def size_of(x: torch.Tensor) -> torch.Tensor:
    """ONNX Size: the element count as an int64 scalar."""
    return torch.tensor(x.numel(), dtype=torch.int64)


def _onnx_shape(x: torch.Tensor, shape: List[int], allowzero: int) -> List[int]:
    if allowzero:
        return list(shape)
    return [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]


def reshape(x: torch.Tensor, shape: torch.Tensor, allowzero: int = 0) -> torch.Tensor:
    """ONNX Reshape with a shape tensor computed at run time (0 copies the input dim)."""
    return torch.reshape(x, _onnx_shape(x, [int(s) for s in shape.tolist()], allowzero))


def flatten(x: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Flatten: 2-D view split before ``axis``."""
    if axis < 0:
        axis += x.dim()
    return torch.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle, ``x.reshape(N, groups, C // groups, ...).transpose(1, 2).reshape(x.shape)``.

    Why not the chain: run as three ops on a channels-last activation it copies twice and returns
    a channels-first tensor that the next convolution copies back (140 us on 1x136x28x28, one
    thread); torch's own kernel does it in one pass and keeps the layout (19 us). The TorchScript
    ONNX exporter has no ``channel_shuffle``: traced, the chain is recorded instead.
    """
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        shape = list(x.shape)
        split = [shape[0], groups, shape[1] // groups] + shape[2:]
        return torch.reshape(torch.transpose(torch.reshape(x, split), 1, 2), shape)
    return torch.channel_shuffle(x, groups)


def reverse_dims(x: torch.Tensor) -> torch.Tensor:
    """ONNX Transpose without ``perm``."""
    return x.permute(list(range(x.dim()))[::-1])


def expand(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """ONNX Expand: broadcast both ways (a 1 in ``shape`` keeps the input dim)."""
    target = torch.broadcast_shapes(tuple(x.shape), tuple(int(s) for s in shape.tolist()))
    return x.expand(target)


def expand_to(x: torch.Tensor, sizes: List[int]) -> torch.Tensor:
    """ONNX Expand to ``sizes`` (ints, some read at run time), aligned to ``x``'s trailing dims.

    Why not ``x.expand(*sizes)``: ONNX broadcasts both ways, so a size of 1 keeps a larger input
    dim (a [K, 1] tensor expanded to the shape of a [1, 64] one is [K, 64]); torch's expand would
    refuse to shrink K to 1. Which sizes are 1 is only known at run time here.
    """
    lead = len(sizes) - x.dim()
    dims = [-1] * max(0, -lead) + [s if i < lead or s != 1 else -1 for i, s in enumerate(sizes)]
    return x.expand(dims)


def tile(x: torch.Tensor, repeats: torch.Tensor) -> torch.Tensor:
    return x.repeat([int(r) for r in repeats.tolist()])


def constant_of_shape(shape: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return torch.full([int(s) for s in shape.tolist()], value.reshape(()).item(), dtype=value.dtype)


def squeeze_all(x: torch.Tensor) -> torch.Tensor:
    return torch.squeeze(x)


def squeeze(x: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    return torch.squeeze(x, tuple(int(a) for a in axes.tolist()))


def unsqueeze(x: torch.Tensor, axes: List[int]) -> torch.Tensor:
    """Insert size-1 dims; ``axes`` may be negative (relative to the output rank)."""
    out_rank = x.dim() + len(axes)
    for a in sorted(a + out_rank if a < 0 else a for a in axes):
        x = torch.unsqueeze(x, a)
    return x


def unsqueeze_dynamic(x: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    return unsqueeze(x, [int(a) for a in axes.reshape(-1).tolist()])


def arange(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ONNX Range: ``start + i * delta`` for ``i < max(ceil((limit - start) / delta), 0)``."""
    s, l, d = start.item(), limit.item(), delta.item()
    n = max(int(math.ceil((l - s) / d)), 0)
    if start.dtype.is_floating_point:
        return (start.to(torch.float64) + torch.arange(n, dtype=torch.float64) * float(d)).to(start.dtype)
    return start + torch.arange(n, dtype=start.dtype) * delta


def eye_like(x: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    rows = torch.arange(x.shape[0]).unsqueeze(1)
    cols = torch.arange(x.shape[1]).unsqueeze(0)
    return (cols - rows == k).to(dtype)


def trilu(x: torch.Tensor, k: torch.Tensor, upper: int) -> torch.Tensor:
    kk = int(k.item())
    return torch.triu(x, kk) if upper else torch.tril(x, kk)


def one_hot(indices: torch.Tensor, depth: torch.Tensor, values: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX OneHot: negative indices count from the end, out-of-range ones give all ``off``."""
    d = int(depth.reshape(()).item()) if isinstance(depth, torch.Tensor) else int(depth)
    idx = indices.to(torch.int64)
    idx = torch.where(idx < 0, idx + d, idx)
    hot = idx.unsqueeze(-1) == torch.arange(d, dtype=torch.int64)
    out = torch.where(hot, values[1], values[0])
    if axis < 0:
        axis += out.dim()
    return torch.movedim(out, -1, axis) if axis != out.dim() - 1 else out
