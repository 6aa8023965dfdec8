"""Convolution helpers that no single torch function covers.

``pad_same`` serves ONNX ``auto_pad=SAME_*`` when the spatial input size is only known at run
time; ``deform_conv`` and ``col2im`` implement ONNX DeformConv and Col2Im with plain tensor ops
(torchvision is not required); ``conv2d_fused`` is a 2-D convolution with an optional residual
add and ReLU that runs on oneDNN with a pre-packed weight in eager CPU inference;
``conv1d_dilated`` runs a small dilated 1-D convolution as one matrix product.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary


def pad_same(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
             lower: bool, value: float = 0.0) -> torch.Tensor:
    """Pad the trailing ``len(kernel)`` axes of ``x`` as ONNX SAME_UPPER/SAME_LOWER would."""
    r = len(kernel)
    spatial = x.shape[-r:]
    pads: List[int] = []
    for i in range(r - 1, -1, -1):
        n = int(spatial[i])
        s, k, d = int(strides[i]), int(kernel[i]), int(dilations[i])
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small = total // 2
        pads += [total - small, small] if lower else [small, total - small]
    if not any(pads):
        return x
    return F.pad(x, pads, "constant", value)


def deform_conv2d(x: torch.Tensor, w: torch.Tensor, offset: torch.Tensor, bias: Optional[torch.Tensor],
                  mask: Optional[torch.Tensor], kernel: Sequence[int], strides: Sequence[int],
                  pads: Sequence[int], dilations: Sequence[int], groups: int,
                  offset_groups: int) -> torch.Tensor:
    """ONNX DeformConv (2-D): bilinear samples at offset kernel taps (zero outside), then a grouped matmul."""
    n, c, ih, iw = x.shape
    oc = w.shape[0]
    kh, kw = int(kernel[0]), int(kernel[1])
    oh, ow = offset.shape[2], offset.shape[3]
    og = int(offset_groups)
    dtype = x.dtype
    off = offset.reshape(n, og, kh, kw, 2, oh, ow).to(dtype)
    base_h = (torch.arange(oh, dtype=dtype, device=x.device) * strides[0] - pads[0]).reshape(1, 1, 1, 1, oh, 1)
    base_w = (torch.arange(ow, dtype=dtype, device=x.device) * strides[1] - pads[1]).reshape(1, 1, 1, 1, 1, ow)
    tap_h = (torch.arange(kh, dtype=dtype, device=x.device) * dilations[0]).reshape(1, 1, kh, 1, 1, 1)
    tap_w = (torch.arange(kw, dtype=dtype, device=x.device) * dilations[1]).reshape(1, 1, 1, kw, 1, 1)
    ph = base_h + tap_h + off[:, :, :, :, 0]  # (n, og, kh, kw, oh, ow)
    pw = base_w + tap_w + off[:, :, :, :, 1]
    cols = _bilinear_zero(x.reshape(n * og, c // og, ih, iw),
                          ph.reshape(n * og, kh * kw * oh * ow), pw.reshape(n * og, kh * kw * oh * ow))
    cols = cols.reshape(n, og, c // og, kh * kw, oh * ow)
    if mask is not None:
        cols = cols * mask.reshape(n, og, 1, kh * kw, oh * ow).to(dtype)
    cols = cols.reshape(n, groups, c // groups * kh * kw, oh * ow)
    wg = w.reshape(groups, oc // groups, -1).to(dtype)
    out = torch.einsum("gok,ngkl->ngol", wg, cols).reshape(n, oc, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1).to(dtype)
    return out


def _bilinear_zero(img: torch.Tensor, ph: torch.Tensor, pw: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (b, c, h, w) at points (b, p), zero outside: (b, c, p)."""
    b, c, h, w = img.shape
    h0 = torch.floor(ph)
    w0 = torch.floor(pw)
    lh = ph - h0
    lw = pw - w0
    flat = img.reshape(b, c, h * w)
    out = torch.zeros(b, c, ph.shape[1], dtype=img.dtype, device=img.device)
    for dh, dw in ((0, 0), (0, 1), (1, 0), (1, 1)):
        hh = h0 + dh
        ww = w0 + dw
        wt = (lh if dh else 1 - lh) * (lw if dw else 1 - lw)
        valid = (hh >= 0) & (hh <= h - 1) & (ww >= 0) & (ww <= w - 1)
        idx = (hh.clamp(0, h - 1) * w + ww.clamp(0, w - 1)).long()
        vals = torch.gather(flat, 2, idx.unsqueeze(1).expand(b, c, idx.shape[1]))
        out = out + vals * (wt * valid.to(img.dtype)).unsqueeze(1)
    return out


def col2im(x: torch.Tensor, image_shape, block_shape, dilations: Sequence[int], pads: Sequence[int],
           strides: Sequence[int]) -> torch.Tensor:
    """ONNX Col2Im for any number of spatial axes (sums overlapping blocks into the image).

    ``image_shape``/``block_shape`` are int lists when known at conversion time, else tensors.
    """
    if isinstance(image_shape, torch.Tensor):
        image_shape = image_shape.tolist()
    if isinstance(block_shape, torch.Tensor):
        block_shape = block_shape.tolist()
    image = [int(v) for v in image_shape]
    block = [int(v) for v in block_shape]
    r = len(image)
    if r == 2 and list(pads[:2]) == list(pads[2:]):
        return F.fold(x, image, block, dilation=[int(d) for d in dilations],
                      padding=[int(p) for p in pads[:2]], stride=[int(s) for s in strides])
    return _col2im_nd(x, image, block, dilations, pads, strides)


def _col2im_nd(x: torch.Tensor, image: List[int], block: List[int], dilations: Sequence[int],
               pads: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    r = len(image)
    n, ck, length = x.shape
    kprod = 1
    for k in block:
        kprod *= k
    c = ck // kprod
    padded = [image[i] + int(pads[i]) + int(pads[i + r]) for i in range(r)]
    counts = [(padded[i] - (block[i] - 1) * int(dilations[i]) - 1) // int(strides[i]) + 1 for i in range(r)]
    # position (in the padded image) of every (kernel tap, block) pair, as a flat index
    flat = torch.zeros(kprod, length, dtype=torch.int64, device=x.device)
    kstride = kprod
    lstride = length
    for i in range(r):
        kstride //= block[i]
        lstride //= counts[i]
        tap = (torch.arange(kprod, device=x.device) // kstride) % block[i]
        pos = (torch.arange(length, device=x.device) // lstride) % counts[i]
        coord = tap.unsqueeze(1) * int(dilations[i]) + pos.unsqueeze(0) * int(strides[i])
        flat = flat * padded[i] + coord
    total = 1
    for p in padded:
        total *= p
    out = torch.zeros(n, c, total, dtype=x.dtype, device=x.device)
    src = x.reshape(n, c, kprod * length)
    out.index_add_(2, flat.reshape(-1), src)
    out = out.reshape([n, c] + padded)
    for i in range(r):
        out = out.narrow(2 + i, int(pads[i]), image[i])
    return out


# --- 2-D convolution with a pre-packed weight (eager CPU inference) ---------------------------------
# Why: ``F.conv2d`` on CPU re-orders the weight into oneDNN's blocked layout on every call, and
# single-threaded 1x1 convolutions at batch < 16 even take a slow im2col+GEMM path; onnxruntime
# packs each weight once. Packing once per weight (and input shape) nearly halves ResNet-50's
# latency. The packed copy is a cache beside the parameter (one per weight, for the last input
# shape), never part of the state_dict, and kept only from a weight's second call on: a run made
# once (the CLI's check, a one-off inference) holds no second copy of the weights, only the packed
# copy of the layer it is in. Tracing, export, compilation, autograd and any input that is not a
# plain CPU float32 tensor take the plain ``F.conv2d`` path, which computes the same values.
_PACKED: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # weight -> (key, packed weight)
# oneDNN's convolution call costs 30-50 us beyond its arithmetic (one thread, AMD EPYC with
# AVX-512: a 64 -> 64 1x1 convolution at 2x2 takes 53 us through oneDNN, 8 us through F.conv2d's
# GEMM). Ungrouped, undilated convolutions on at most SMALL_MAX_PIXELS output pixels and below
# ONEDNN_MIN_MACS multiply-adds per call take F.conv2d instead: batch-1 latency of a MobileViT
# 2.4x -> 2.15x onnxruntime, small CNN blocks and the light model zoo unchanged (interleaved A/B,
# one thread). F.conv2d loses elsewhere: 3x3 kernels on larger images (3 -> 8 channels at 64x64:
# 458 us against 72 us), grouped, depthwise and dilated convolutions (a dilated 3x3 16 -> 16 at
# 32x32: 210 us against 92 us). 1x1 convolutions on larger images would gain too (MobileViT: 1.95x),
# but their GEMM rounds differently from oneDNN and onnxruntime: SqueezeNet's light graph, whose
# 1000 logits are equal (9.5e9, one float32 step 1024) by construction, then fails its softmax.
ONEDNN_MIN_MACS = 4_000_000
SMALL_MAX_PIXELS = 64


def clear_packed_weights() -> None:
    """Drop every cached packed weight (rebuilt on the next call); needed only after editing a
    weight's values through ``.data``, which PyTorch's version counter does not see."""
    _PACKED.clear()


def _fast_path_ok(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  residual: Optional[torch.Tensor]) -> bool:
    """Plain CPU float32 tensors in eager mode, no autograd, oneDNN usable (checks ordered by cost)."""
    if type(x) is not torch.Tensor or x.dtype != torch.float32 or not x.is_cpu or x.dim() != 4:
        return False  # fake, functional or other tensor subclasses mean someone is tracing
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    for t in (weight, bias, residual):
        if t is not None and (type(t) not in _PLAIN or t.dtype != torch.float32 or not t.is_cpu or t.is_mkldnn):
            return False
    if residual is not None and type(residual) is not torch.Tensor:
        return False
    if weight.dim() != 4 or x.is_mkldnn or not torch.backends.mkldnn.enabled or not torch.backends.mkldnn.is_available():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
                                    or (residual is not None and residual.requires_grad)):
        return False  # oneDNN's fused op has no backward
    return True


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _packed_weight(weight: torch.Tensor, x: torch.Tensor, stride: List[int], padding: List[int],
                   dilation: List[int], groups: int) -> torch.Tensor:
    """oneDNN's blocked copy of ``weight`` for this input shape, kept from its second call on (with
    this shape) while ``weight`` is unchanged."""
    version = -1 if weight.is_inference() else weight._version  # inference tensors have no counter
    key = (weight.data_ptr(), version, x.shape, torch.get_num_threads())
    conv = (stride, padding, dilation, groups)
    entry = _PACKED.get(weight)
    seen = entry is not None and entry[0] == key and entry[1] == conv
    if seen and entry[2] is not None:
        return entry[2]
    packed = torch.ops.mkldnn._reorder_convolution_weight(weight.detach(), padding, stride, dilation, groups,
                                                          list(x.shape))
    _PACKED[weight] = (key, conv, packed if seen else None)  # kept from the second call on: see the top
    return packed


def _below_onednn(n: int, oh: int, ow: int, weight: torch.Tensor, dilation: List[int]) -> bool:
    """An ungrouped convolution that F.conv2d computes faster than oneDNN (see ONEDNN_MIN_MACS)."""
    if dilation[0] != 1 or dilation[1] != 1 or oh * ow > SMALL_MAX_PIXELS:
        return False
    return n * oh * ow * weight.numel() < ONEDNN_MIN_MACS


# activation -> (oneDNN post-op, its algorithm) and the same function in PyTorch (the plain paths)
ACTIVATIONS = {
    "silu": ("swish", "", F.silu),
    "hardswish": ("hardswish", "", F.hardswish),
    "sigmoid": ("sigmoid", "", torch.sigmoid),
    "gelu": ("gelu", "none", F.gelu),
    "gelu_tanh": ("gelu", "tanh", lambda t: F.gelu(t, approximate="tanh")),
}


def conv2d_fused(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                 padding: List[int], dilation: List[int], groups: int, residual: Optional[torch.Tensor] = None,
                 relu: bool = False, residual_is_dead: bool = False,
                 clamp: Optional[List[float]] = None, activation: Optional[str] = None) -> torch.Tensor:
    """``relu?(F.conv2d(x, weight, bias, stride, padding, dilation, groups) + residual?)``, or
    ``torch.clamp(F.conv2d(...), *clamp)`` (ReLU6 and the like, ``clamp = [lo, hi]``, finite), or
    ``activation(F.conv2d(...))`` for an :data:`ACTIVATIONS` name (SiLU, hardswish, sigmoid, GELU),
    which oneDNN applies as it writes the output: one pass and one tensor less.

    ``stride``/``padding``/``dilation`` are lists of two ints (symmetric padding).
    ``residual_is_dead``: nothing reads ``residual`` afterwards and it shares memory with no
    other value, so the fast path may accumulate into it instead of allocating an output.
    """
    if _fast_path_ok(x, weight, bias, residual):
        n, c, h, w = x.shape
        kh, kw = weight.shape[2], weight.shape[3]
        oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        if groups == 1 and _below_onednn(n, oh, ow, weight, dilation):
            return _small_conv2d(x, weight, bias, stride, padding, dilation, residual, relu, clamp, activation)
        if (n > 0 and oh > 0 and ow > 0 and c == weight.shape[1] * groups
                and (residual is None or residual.shape == (n, weight.shape[0], oh, ow))):
            packed = _packed_weight(weight, x, stride, padding, dilation, groups)
            unary = "relu" if relu else "none"
            if residual is None:
                if clamp is not None:  # oneDNN's hardtanh post-op: no second pass, no second tensor
                    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation,
                                                                   groups, "hardtanh", list(clamp), "")
                if activation is not None:
                    post_op, algorithm, _ = ACTIVATIONS[activation]
                    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation,
                                                                   groups, post_op, [], algorithm)
                return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation, groups,
                                                               unary, [], "")
            if (residual_is_dead and residual.is_contiguous(memory_format=torch.channels_last)
                    and residual.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()):
                # oneDNN's sum post-op: accumulate into the residual's memory in the same pass
                return torch.ops.mkldnn._convolution_pointwise_.binary(
                    residual, x, packed, bias, padding, stride, dilation, groups, "add", None,
                    unary if relu else None, [], "")
            # oneDNN's out-of-place binary-add post-op is slower than adding into the fresh output
            y = torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation, groups,
                                                        "none", [], "")
            return torch.ops.aten._add_relu_(y, residual) if relu else y.add_(residual)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if residual is not None:
        y = y + residual
    if clamp is not None:
        y = torch.clamp(y, clamp[0], clamp[1])
    if activation is not None:
        y = ACTIVATIONS[activation][2](y)
    return torch.relu(y) if relu else y


# For one sample of at most SLOW_DILATED_MAX_ELEMENTS input elements, PyTorch (2.x, CPU) runs a
# dilated 1-D convolution on its generic dilated kernel, which copies the input tap by tap and
# element by element (a dilated 3-tap 32 -> 32 convolution over 128 steps: 42 us; 64 channels over
# 320 steps: 146 us); a larger input or a batch takes oneDNN. One GEMM over the gathered taps
# computes the same sums in 15 and 53 us (one thread; 2.4-3.2x faster across 8-512 channels).
SLOW_DILATED_MAX_ELEMENTS = 20480


def conv1d_dilated(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                   padding: List[int], dilation: List[int], groups: int) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, stride, padding, dilation, groups)`` for a dilated convolution;
    in eager mode on one small CPU sample (:data:`SLOW_DILATED_MAX_ELEMENTS`), one matrix product
    of the weight with the input's taps gathered by stride (im2col) instead of PyTorch's kernel."""
    if (groups == 1 and type(x) is torch.Tensor and x.dim() == 3 and x.shape[0] == 1 and x.is_cpu
            and x.shape[1] * x.shape[2] <= SLOW_DILATED_MAX_ELEMENTS and x.dtype in (torch.float32, torch.float64)
            and type(weight) in _PLAIN and weight.dtype == x.dtype and weight.dim() == 3
            and (bias is None or (type(bias) in _PLAIN and bias.dtype == x.dtype))
            and not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling())):
        return _im2col_conv1d(x, weight, bias, stride[0], padding[0], dilation[0])
    return F.conv1d(x, weight, bias, stride, padding, dilation, groups)


def _im2col_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
                   padding: int, dilation: int) -> torch.Tensor:
    """One-sample 1-D convolution as ``weight[O, C*K] @ taps[C*K, L_out] (+ bias)``."""
    out_channels, channels, taps = weight.shape
    padded = F.pad(x, (padding, padding)) if padding else x.contiguous()
    length = padded.shape[2]
    out_length = (length - dilation * (taps - 1) - 1) // stride + 1
    if out_length <= 0 or channels != x.shape[1]:
        return F.conv1d(x, weight, bias, [stride], [padding], [dilation])  # let PyTorch name the error
    cols = padded.as_strided((channels, taps, out_length), (length, dilation, stride)).reshape(channels * taps,
                                                                                           out_length)
    w = weight.reshape(out_channels, channels * taps)
    y = torch.mm(w, cols) if bias is None else torch.addmm(bias.reshape(out_channels, 1), w, cols)
    return y.unsqueeze(0)


def _small_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                  padding: List[int], dilation: List[int], residual: Optional[torch.Tensor], relu: bool,
                  clamp: Optional[List[float]], activation: Optional[str]) -> torch.Tensor:
    """``conv2d_fused``'s fast path for a convolution too small for oneDNN (``ONEDNN_MIN_MACS``):
    F.conv2d, then the residual, clamp and ReLU in place on its fresh output (no autograd here), and
    the activation, if any."""
    y = F.conv2d(x, weight, bias, stride, padding, dilation)
    if residual is not None:
        y = y.add_(residual) if residual.shape == y.shape else y + residual
    if clamp is not None:
        y.clamp_(clamp[0], clamp[1])
    if activation is not None:
        y = ACTIVATIONS[activation][2](y)
    return y.relu_() if relu else y
