"""ONNX pooling where PyTorch's pooling functions do not fit.

PyTorch pools take one symmetric pad per axis of at most half the kernel, have no dilation for
average pooling and index max-pool results per (batch, channel) plane. These helpers pad
explicitly, compute window sums with a depthwise convolution of ones, and rewrite indices into
ONNX's flat (optionally column-major) form. Shapes are read from the tensors, so the same code
serves static and run-time spatial sizes.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def resolve(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
            begin: Optional[Sequence[int]], end: Optional[Sequence[int]], auto_pad: str,
            ceil_mode: bool) -> Tuple[List[int], List[int], List[int], List[int]]:
    """(begin pads, end pads, end pads incl. ceil-mode overhang, output sizes) per spatial axis."""
    b_out: List[int] = []
    e_out: List[int] = []
    e_full: List[int] = []
    sizes: List[int] = []
    for i in range(len(kernel)):
        n, k, s, d = int(spatial[i]), int(kernel[i]), int(strides[i]), int(dilations[i])
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            small = total // 2
            b, e = (total - small, small) if auto_pad == "SAME_LOWER" else (small, total - small)
        else:
            b, e = int(begin[i]), int(end[i])
        span = n + b + e - ((k - 1) * d + 1)
        if ceil_mode:
            out = -(-span // s) + 1
            if (out - 1) * s >= n + b:
                out -= 1
        else:
            out = span // s + 1
        need = (out - 1) * s + (k - 1) * d + 1
        b_out.append(b)
        e_out.append(e)
        e_full.append(max(e, need - n - b))
        sizes.append(out)
    return b_out, e_out, e_full, sizes


def ceil_mode_covers(n: int, kernel: int, stride: int, dilation: int, begin: int, end: int, ceil_mode: bool) -> bool:
    """Whether max pooling ``n`` elements with pads ``begin``/``end`` (ONNX, -inf padding) takes the
    windows of PyTorch's ceil-mode pooling with ``begin`` on both sides: same count, same starts,
    each holding an input element (PyTorch clips what runs past its padding; a maximum gains
    nothing from padding). Exporters write such end pads for TensorFlow's SAME padding and Caffe's
    rounding up (``pads=[0, 0, 1, 1]`` with stride 2); pooling that way needs no padded copy."""
    if end < begin or begin > kernel // 2:
        return False
    onnx_size = resolve([n], [kernel], [stride], [dilation], [begin], [end], "NOTSET", ceil_mode)[3][0]
    torch_size = resolve([n], [kernel], [stride], [dilation], [begin], [begin], "NOTSET", True)[3][0]
    return onnx_size == torch_size and (onnx_size - 1) * stride - begin < n


def _pad_list(begin: Sequence[int], end: Sequence[int]) -> List[int]:
    out: List[int] = []
    for i in range(len(begin) - 1, -1, -1):
        out += [int(begin[i]), int(end[i])]
    return out


def window_sum(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> torch.Tensor:
    """Sum over each (dilated) window of an already padded ``x`` (N, C, *spatial)."""
    r = len(kernel)
    n, c = x.shape[0], x.shape[1]
    flat = x.reshape([n * c, 1] + list(x.shape[2:]))
    ones = torch.ones([1, 1] + [int(k) for k in kernel], dtype=x.dtype, device=x.device)
    y = _CONV[r](flat, ones, None, list(strides), 0, list(dilations))
    return y.reshape([n, c] + list(y.shape[2:]))


def avg_pool(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
             begin: Optional[Sequence[int]], end: Optional[Sequence[int]], auto_pad: str, ceil_mode: bool,
             count_include_pad: bool) -> torch.Tensor:
    """ONNX AveragePool: padding counts only when ``count_include_pad``; the ceil-mode overhang never does."""
    r = len(kernel)
    spatial = list(x.shape[2:])
    b, e, e_full, _ = resolve(spatial, kernel, strides, dilations, begin, end, auto_pad, ceil_mode)
    total = window_sum(F.pad(x, _pad_list(b, e_full)), kernel, strides, dilations)
    ones = torch.ones([1, 1] + spatial, dtype=x.dtype, device=x.device)
    if count_include_pad:
        ones = F.pad(ones, _pad_list(b, e), value=1.0)
        mask = F.pad(ones, _pad_list([0] * r, [f - g for f, g in zip(e_full, e)]))
    else:
        mask = F.pad(ones, _pad_list(b, e_full))
    count = window_sum(mask, kernel, strides, dilations)
    return total / count


def lp_pool(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
            begin: Optional[Sequence[int]], end: Optional[Sequence[int]], auto_pad: str, ceil_mode: bool,
            p: float) -> torch.Tensor:
    """ONNX LpPool: (sum over the window of |x|^p)^(1/p), padding contributing nothing."""
    spatial = list(x.shape[2:])
    b, _, e_full, _ = resolve(spatial, kernel, strides, dilations, begin, end, auto_pad, ceil_mode)
    powered = torch.abs(x) ** p
    total = window_sum(F.pad(powered, _pad_list(b, e_full)), kernel, strides, dilations)
    return total ** (1.0 / p)


_FLOAT32_EXACT_INTS = (torch.uint8, torch.int8, torch.int16, torch.uint16, torch.bool)
# 2-D max pooling runs on channels-last data from this many channels on: torch's channels-last kernel
# is vectorized over channels, its NCHW one is not (one thread, 1x64x112x112, 3x3 stride 2: 1.3 ms
# with the conversion, against 6.8 ms); with 3 channels the NCHW kernel is faster.
CHANNELS_LAST_MIN_CHANNELS = 8


def max_pool(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
             begin: Optional[Sequence[int]], end: Optional[Sequence[int]], auto_pad: str, ceil_mode: bool,
             storage_order: int, with_indices: bool):
    """ONNX MaxPool with any padding and any dtype: pad with the lowest value, pool, then fix up the
    indices. Integers pool as floats that hold them exactly. Without indices, 2-D pooling runs on
    channels-last data: torch's channels-last kernel is vectorized over channels (one thread,
    64x111x111: 0.3 ms, against 5-6 ms for its NCHW kernel); a float result stays channels-last,
    an integer one comes back in NCHW. End pads that PyTorch's ceil mode covers
    (:func:`ceil_mode_covers`) are not padded."""
    r = len(kernel)
    spatial = [int(v) for v in x.shape[2:]]
    b, e, e_full, _ = resolve(spatial, kernel, strides, dilations, begin, end, auto_pad, ceil_mode)
    work_dtype = x.dtype if x.dtype.is_floating_point else (
        torch.float32 if x.dtype in _FLOAT32_EXACT_INTS else torch.float64)
    channels_last = r == 2 and not with_indices and x.is_cpu and x.shape[1] >= CHANNELS_LAST_MIN_CHANNELS
    work = x.to(work_dtype, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if not with_indices and all(ceil_mode_covers(spatial[i], int(kernel[i]), int(strides[i]), int(dilations[i]),
                                                 b[i], e[i], ceil_mode) for i in range(r)):
        res = _MAX[r](work, list(kernel), list(strides), b, list(dilations), True, False)
    else:
        pads = _pad_list(b, e_full)
        padded = F.pad(work, pads, value=float("-inf")) if any(pads) else work
        res = _MAX[r](padded, list(kernel), list(strides), 0, list(dilations), False, with_indices)
    if not with_indices:
        # floats stay channels-last, as convolutions leave them; codes go back to their NCHW tensors
        return res if res.dtype == x.dtype else res.to(x.dtype, memory_format=torch.contiguous_format)
    y, idx = res
    padded_spatial = [int(v) for v in padded.shape[2:]]
    return y.to(x.dtype), onnx_indices(idx, padded_spatial, b, spatial, storage_order)


def onnx_indices(idx: torch.Tensor, padded_spatial: Sequence[int], begin: Sequence[int],
                 spatial: Sequence[int], storage_order: int) -> torch.Tensor:
    """Per-plane indices into a padded tensor -> ONNX flat indices into the whole unpadded input."""
    r = len(spatial)
    coords = []
    rest = idx
    for i in range(r - 1, -1, -1):
        coords.append(rest % int(padded_spatial[i]) - int(begin[i]))
        rest = torch.div(rest, int(padded_spatial[i]), rounding_mode="floor")
    coords.reverse()
    flat = torch.zeros_like(idx)
    order = range(r) if storage_order == 0 else range(r - 1, -1, -1)
    for i in order:
        flat = flat * int(spatial[i]) + coords[i]
    plane = 1
    for v in spatial:
        plane *= int(v)
    n, c = idx.shape[0], idx.shape[1]
    base = torch.arange(n * c, dtype=idx.dtype, device=idx.device).reshape([n, c] + [1] * r) * plane
    return flat + base


def max_unpool(x: torch.Tensor, indices: torch.Tensor, inferred: Sequence[int],
               output_shape: Optional[torch.Tensor]) -> torch.Tensor:
    """ONNX MaxUnpool: scatter into the inferred shape, then place it at the origin of output_shape."""
    full = [int(x.shape[0]), int(x.shape[1])] + [int(v) for v in inferred]
    total = 1
    for v in full:
        total *= v
    y = torch.zeros(total, dtype=x.dtype, device=x.device)
    y = y.scatter(0, indices.reshape(-1).long(), x.reshape(-1)).reshape(full)
    if output_shape is None:
        return y
    target = [int(v) for v in output_shape.tolist()] if isinstance(output_shape, torch.Tensor) else list(output_shape)
    pads: List[int] = []
    for i in range(len(full) - 1, -1, -1):
        pads += [0, target[i] - full[i]]
    return F.pad(y, pads)


def global_pool(x: torch.Tensor, kind: str, p: float = 2.0) -> torch.Tensor:
    """GlobalAveragePool/GlobalMaxPool/GlobalLpPool over every axis after the channels, for an
    input whose rank is known only at run time."""
    axes = list(range(2, x.dim()))
    if kind == "mean":
        return torch.mean(x, axes, True)
    if kind == "max":
        return torch.amax(x, axes, True)
    return torch.linalg.vector_norm(x, p, axes, True)
