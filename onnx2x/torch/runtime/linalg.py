"""Linear-algebra helpers: integer Gemm keeps ONNX's integer semantics; ``linear_prepacked`` is
``F.linear`` on oneDNN with the weight packed once (eager CPU inference). MatMulInteger's exact
8-bit products live in quantize.py with the other quantized products.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary


def gemm(a: torch.Tensor, b: torch.Tensor, c: Optional[torch.Tensor], alpha: float, beta: float,
         trans_a: bool, trans_b: bool) -> torch.Tensor:
    """alpha * A' @ B' + beta * C, keeping the input dtype (also for integer Gemm)."""
    if trans_a:
        a = a.transpose(0, 1)
    if trans_b:
        b = b.transpose(0, 1)
    if a.dtype.is_floating_point:
        y = torch.matmul(a, b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None and beta != 0.0:
            y = y + (c.to(y.dtype) if beta == 1.0 else c.to(y.dtype) * beta)
        return y
    y = torch.matmul(a.to(torch.int64), b.to(torch.int64))
    if alpha != 1.0:
        y = y.to(torch.float64) * alpha
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else c.to(torch.float64) * beta)
    return y.to(a.dtype)


# --- F.linear with a pre-packed weight (eager CPU inference) -------------------------------------
# Why: ``F.linear`` on CPU calls MKL's sgemm, which re-packs the weight on every call; onnxruntime
# packs each weight once. oneDNN with a weight packed once runs transformer-sized layers 10-20%
# faster (BERT-small: 1.33x -> 1.2x onnxruntime's latency on one thread). The packed copy is a
# cache beside the parameter, never part of the state_dict. Tracing, export, compilation, autograd
# and any input that is not a plain CPU float32 tensor take the plain ``F.linear`` path. The
# packed copy costs memory: it is kept only from a weight's second call on (a run made once, such
# as the CLI's check, holds the packed copy of one layer at a time, not a second copy of the
# weights: 0.72 GB less at the check of a 1e9-parameter decoder), and weights over PACK_MAX_BYTES
# (an LLM's or VGG's big matrices, where a second copy would double what the process holds) stay
# on the plain path.
PACK_MAX_BYTES = 16 * 2**20
# oneDNN's call costs about 18 us more than MKL's; packing pays for that only on a weight of at
# least 512x512 and at least 4 rows of input (one thread: 64x64 weights run 2-9x slower packed,
# 256x256 1.1-4x up to 64 rows, one row 1.2-8x; 768x768 at 4-1024 rows 0.65-0.9x). Smaller
# problems take F.linear (a 64-wide BERT's layers: 23 -> 4 us each).
PACK_MIN_ELEMENTS = 512 * 512
PACK_MIN_ROWS = 4
_PACKED_LINEAR: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # weight -> (key, packed weight)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def matrix_vector_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.matmul(a, b)`` for ``b`` of shape [..., K, 1]: a batch of matrix-vector products
    (a mixture of experts' per-token expert weights applied to each token).

    Computed as ``(b^T a^T)^T``, the same dot products: torch's CPU bmm takes a slow path for a
    result with one column and is fast for one row (32 x [256, 64] @ [64, 1], one thread: 566 us
    against 143 us; 8 x [1024, 512] @ [512, 1]: 5.5 ms against 1.6 ms)."""
    if a.dim() < 3 or b.dim() < 3 or b.shape[-1] != 1:
        return torch.matmul(a, b)
    return torch.matmul(b.transpose(-1, -2), a.transpose(-1, -2)).transpose(-1, -2)


def clear_packed_linear_weights() -> None:
    """Drop every cached packed weight (rebuilt on the next call); needed only after editing a
    weight's values through ``.data``, which PyTorch's version counter does not see."""
    _PACKED_LINEAR.clear()


def _linear_fast_path_ok(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """A problem big enough to gain from packing, plain CPU float32 tensors in eager mode, no
    autograd, oneDNN usable (checks ordered by cost: most small layers leave at the first)."""
    if type(x) is not torch.Tensor:
        return False  # fake, functional or other tensor subclasses mean someone is tracing: no size guards
    if not PACK_MIN_ELEMENTS <= weight.numel() <= PACK_MAX_BYTES // 4 or x.numel() < PACK_MIN_ROWS * weight.shape[-1]:
        return False
    if x.dtype != torch.float32 or not x.is_cpu or x.is_mkldnn or x.dim() < 1:
        return False
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    for t in (weight, bias):
        if t is not None and (type(t) not in _PLAIN or t.dtype != torch.float32 or not t.is_cpu or t.is_mkldnn):
            return False
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1] or (bias is not None and bias.shape != weight.shape[:1]):
        return False
    if not torch.backends.mkldnn.enabled or not torch.backends.mkldnn.is_available():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return False  # oneDNN's op has no backward
    return True


def _packed_linear_weight(weight: torch.Tensor) -> torch.Tensor:
    """oneDNN's blocked copy of ``weight``, kept from its second call on while ``weight`` is unchanged."""
    version = -1 if weight.is_inference() else weight._version  # inference tensors have no counter
    key = (weight.data_ptr(), version, torch.get_num_threads())
    entry = _PACKED_LINEAR.get(weight)
    seen = entry is not None and entry[0] == key
    if seen and entry[1] is not None:
        return entry[1]
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())
    _PACKED_LINEAR[weight] = (key, packed if seen else None)  # kept from the second call on: see the top
    return packed


def linear_prepacked(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; ``weight`` [out, in] is packed for oneDNN once."""
    if _linear_fast_path_ok(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, _packed_linear_weight(weight), bias, "none", [], "")
    return F.linear(x, weight, bias)
