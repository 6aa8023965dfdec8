"""Inference fusions on a converted ``GraphModule``: fewer passes over activations, same numbers.

Run by :func:`onnx2x.torch.convert.convert_prepared` (``fuse=True``) on the finished module:

0. **Exact patterns** (:mod:`.fusion_patterns`): decomposed LayerNorm/RMSNorm/GroupNorm, GELU,
   attention and MatMul+bias chains back into ``F.layer_norm``/``F.rms_norm``/``F.group_norm``/
   ``F.gelu``/``F.scaled_dot_product_attention``/``F.linear``.

1. **Affine folding.** A per-channel affine op with constant parameters -- inference
   BatchNormalization, or Mul/Add/Sub/Div by a per-channel constant -- that is the only consumer
   of a convolution (or transposed convolution) with a constant weight is folded into that
   weight and bias; a chain of them (densenet's Conv-BN-Mul-Add) folds at once. The same ops
   after an inference BatchNormalization fold into its scale and bias. onnx-simplifier used to
   fold Conv+BN; it now sees no weights (``common/simplify.py``), so the folding happens here, for
   every model and also without the simplifier.
2. **Fused 2-D convolutions.** ``conv2d`` with a constant weight, with a following residual
   ``add`` and/or ``relu`` when the convolution (then the add) is their only input producer, or
   with a following clamp between two numbers (ReLU6) or SiLU/hardswish/sigmoid/GELU, becomes one
   :func:`runtime.conv.conv2d_fused` call: oneDNN with the weight packed once, the add, ReLU,
   clamp or activation applied in the same pass (eager CPU inference; otherwise plain torch ops).
3. **Pre-packed linear layers.** ``F.linear`` with a constant float32 weight (from the patterns
   above, or written by a converter) becomes :func:`runtime.linalg.linear_prepacked`: oneDNN with
   the weight packed once (eager CPU inference; otherwise plain ``F.linear``).

Values that disappear (a convolution's output before its folded BatchNormalization) lose their
entry in ``gm.onnx_value_to_fx``; the last value of a fused chain maps to the fused node, so the
verification locator still finds every value the module computes.
"""
from __future__ import annotations

import logging
import math
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F

from common.ir import onnx_ir as ir

from .builder import channels_last_conv_weights
from .dtypes import torch_dtype
from .graph_upkeep import check_graph, drop_dead_nodes
from .runtime import conv as rt_conv
from .runtime import linalg as rt_linalg
from .fusion_patterns import ValueInfo, _const, _new_attr, fuse_patterns
from .runtime import normalization as rt_norm

log = logging.getLogger(__name__)

_CONV = {torch.conv1d: 1, F.conv1d: 1, torch.conv2d: 2, F.conv2d: 2, torch.conv3d: 3, F.conv3d: 3}
_CONV_T = {torch.conv_transpose1d: 1, F.conv_transpose1d: 1, torch.conv_transpose2d: 2, F.conv_transpose2d: 2,
           torch.conv_transpose3d: 3, F.conv_transpose3d: 3}
_ADD = (torch.add, operator.add)
_SUB = (torch.sub, operator.sub)
_MUL = (torch.mul, operator.mul)
_DIV = (torch.div, operator.truediv)
_RELU = (torch.relu, F.relu)


@dataclass
class FusionStats:
    folded: int = 0  # affine ops folded into a convolution or a BatchNormalization
    fused_convs: int = 0  # conv2d calls turned into conv2d_fused
    fused_adds: int = 0
    fused_relus: int = 0
    fused_clamps: int = 0  # ReLU6-like clamps with number bounds applied in the convolution
    fused_activations: int = 0  # SiLU, hardswish, sigmoid, GELU applied in the convolution
    dilated_conv1ds: int = 0  # dilated conv1d calls turned into conv1d_dilated
    layer_norms: int = 0  # exact pattern fusions (fusion_patterns.py)
    rms_norms: int = 0
    group_norms: int = 0
    gelus: int = 0
    self_gated: int = 0  # SiLU, hardswish
    attentions: int = 0
    linears: int = 0
    prepacked_linears: int = 0  # F.linear calls turned into linear_prepacked
    channel_shuffles: int = 0
    merged_rnn_outputs: int = 0  # RNN outputs returned in torch's layout (exporters' Transpose + Reshape)
    rnn_stacks: int = 0  # chains of such LSTM/GRU layers run as one call of torch's kernel
    quantize_dequantize: int = 0  # QDQ pairs on float32 activations run without their 8-bit codes


def fuse(gm: fx.GraphModule, info: Optional[dict[str, ValueInfo]] = None) -> FusionStats:
    """Fold and fuse ``gm.graph`` in place (the caller recompiles). ``info`` (:func:`value_info`)
    gives the ranks and shapes the passes check."""
    stats = FusionStats()
    info = info or {}
    for key, value in vars(fuse_patterns(gm, info)).items():
        setattr(stats, key, value)
    names = _ValueNames(gm)
    _fold_into_convs(gm, stats, names)
    _batch_norms_to_affine(gm, info, stats, names)
    _fuse_conv2d(gm, stats, names)
    _dilated_conv1ds(gm, stats)
    _prepack_linears(gm, stats)
    _mark_dead_residuals(gm)
    _weights_channels_last(gm)
    drop_dead_nodes(gm.graph)
    _drop_unused_attrs(gm)
    check_graph(gm.graph)
    live = {n.name for n in gm.graph.nodes}
    if hasattr(gm, "onnx_value_to_fx"):
        gm.onnx_value_to_fx = {k: v for k, v in gm.onnx_value_to_fx.items() if v in live}
    if any(vars(stats).values()):
        log.debug("fusion: %s", stats)
    return stats


# --- constants ----------------------------------------------------------------------------------
def _per_channel(c: torch.Tensor, rank: int, channels: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """``c`` as a float64 [channels] vector when it broadcasts against [N, C, ...] of ``rank`` along C only."""
    if c.dtype != dtype or c.dim() > rank or c.is_complex():
        return None
    shape = [1] * (rank - c.dim()) + list(c.shape)
    if rank < 2 or any(s != 1 for i, s in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return c.detach().to(torch.float64).reshape(-1).expand(channels).clone()


def _affine_step(gm: fx.GraphModule, user: fx.Node, data: fx.Node, rank: int, channels: int,
                 dtype: torch.dtype) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(scale, shift) when ``user`` computes ``data * scale + shift`` per channel with constants."""
    if user.op != "call_function" or user.kwargs:
        return None
    args = user.args
    if user.target is rt_norm.batch_norm_inference:
        if len(args) != 6 or args[0] is not data or any(a is data for a in args[1:]):
            return None
        params = [_const(gm, a) for a in args[1:5]]
        if any(p is None or p.dim() != 1 or p.shape[0] != channels or not p.dtype.is_floating_point
               for p in params) or rank < 2 or dtype not in (torch.float32, torch.float64):
            return None
        s, b, m, v = (p.detach().to(torch.float64) for p in params)
        scale = s / torch.sqrt(v + float(args[5]))
        return scale, b - m * scale
    if len(args) != 2 or (args[0] is data) == (args[1] is data):
        return None
    other = args[1] if args[0] is data else args[0]
    c = _const(gm, other)
    c = None if c is None else _per_channel(c, rank, channels, dtype)
    if c is None:
        return None
    ones, zeros = torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    if user.target in _MUL:
        return c, zeros
    if user.target in _ADD:
        return ones, c
    if user.target in _SUB and args[0] is data:
        return ones, -c
    if user.target in _DIV and args[0] is data and bool((c != 0).all()):
        return 1.0 / c, zeros
    return None


def _affine_chain(gm: fx.GraphModule, start: fx.Node, rank: int, channels: int, dtype: torch.dtype
                  ) -> tuple[list[fx.Node], torch.Tensor, torch.Tensor]:
    """The longest run of single-consumer affine ops after ``start`` and their combined scale/shift."""
    scale = torch.ones(channels, dtype=torch.float64)
    shift = torch.zeros(channels, dtype=torch.float64)
    chain: list[fx.Node] = []
    last = start
    while len(last.users) == 1:
        user = next(iter(last.users))
        step = _affine_step(gm, user, last, rank, channels, dtype)
        if step is None:
            break
        s, t = step
        scale, shift = scale * s, shift * s + t
        chain.append(user)
        last = user
    return chain, scale, shift


def _set_tensor_arg(gm: fx.GraphModule, user: fx.Node, index: int, tensor: torch.Tensor, onnx_name: str,
                    hint: str, readers: Counter) -> None:
    """Point ``user.args[index]`` at ``tensor``: replaces the attribute when only ``user`` reads it
    (``readers``: get_attr nodes per attribute name)."""
    old = user.args[index]
    param_names: dict[str, str] = getattr(gm, "onnx_param_names", {})
    if (isinstance(old, fx.Node) and old.op == "get_attr" and len(old.users) == 1
            and readers[old.target] == 1):
        name = old.target
        if name in gm._parameters:
            gm._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            gm._buffers[name] = tensor
        return
    base = hint
    name, i = base, 1
    while hasattr(gm, name):
        i += 1
        name = f"{base}_{i}"
    gm.register_parameter(name, torch.nn.Parameter(tensor, requires_grad=False))
    param_names[name] = onnx_name
    with gm.graph.inserting_before(user):
        node = gm.graph.get_attr(name)
    readers[name] += 1
    args = list(user.args)
    args[index] = node
    user.args = tuple(args)


class _ValueNames:
    """``gm.onnx_value_to_fx`` with its reverse (fx node -> ONNX names), so that re-pointing the
    names after a fold costs the names involved rather than a walk over all of them."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.table: dict[str, str] = getattr(gm, "onnx_value_to_fx", {})
        self.by_fx: dict[str, set[str]] = {}
        for onnx_name, fx_name in self.table.items():
            self.by_fx.setdefault(fx_name, set()).add(onnx_name)

    def retire(self, chain: list[fx.Node], survivor: fx.Node) -> None:
        """Let ``survivor`` stand for the chain's last value, erase the chain, and re-point the ONNX names:
        the survivor's own value and the chain's intermediate values are computed by no node any more."""
        last = chain[-1]
        last.replace_all_uses_with(survivor)
        for gone in [survivor.name] + [n.name for n in chain[:-1]]:
            for onnx_name in self.by_fx.pop(gone, ()):
                del self.table[onnx_name]
        moved = self.by_fx.pop(last.name, set())
        for onnx_name in moved:
            self.table[onnx_name] = survivor.name
        if moved:
            self.by_fx.setdefault(survivor.name, set()).update(moved)
        for node in reversed(chain):
            node.graph.erase_node(node)


# --- 1. affine ops into convolutions --------------------------------------------------------------
def _storage_owners(gm: fx.GraphModule) -> dict[int, int]:
    """How many tensor attributes (of ``gm`` and its submodules) use each storage."""
    owners: dict[int, int] = {}
    for module in gm.modules():
        tensors = list(module._parameters.values()) + list(module._buffers.values())
        tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
        for t in tensors:
            if t is not None and t.layout == torch.strided:
                ptr = t.untyped_storage().data_ptr()
                owners[ptr] = owners.get(ptr, 0) + 1
    return owners


def _exclusive(gm: fx.GraphModule, attr: Any, user: fx.Node, owners: dict[int, int], readers: Counter) -> bool:
    """True when ``attr`` (a get_attr node) is read by ``user`` alone and its memory is no one else's
    (``readers``: get_attr nodes per attribute)."""
    if not (isinstance(attr, fx.Node) and attr.op == "get_attr" and len(attr.users) == 1):
        return False
    if readers[attr.target] != 1:
        return False
    t = _const(gm, attr)
    return (t is not None and not t.requires_grad and t.layout == torch.strided
            and owners.get(t.untyped_storage().data_ptr(), 0) == 1)


def _fold_into_convs(gm: fx.GraphModule, stats: FusionStats, names: _ValueNames) -> None:
    param_names: dict[str, str] = getattr(gm, "onnx_param_names", {})
    owners = _storage_owners(gm)
    readers = Counter(n.target for n in gm.graph.nodes if n.op == "get_attr")  # kept up to date below
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.kwargs:
            continue
        transposed = node.target in _CONV_T
        if not (node.target in _CONV and len(node.args) == 7) and not (transposed and len(node.args) == 8):
            continue
        w = _const(gm, node.args[1])
        b = _const(gm, node.args[2]) if node.args[2] is not None else None
        if w is None or (node.args[2] is not None and b is None) or w.dtype not in (torch.float32, torch.float64):
            continue
        groups = int(node.args[6])
        channels = w.shape[1] * groups if transposed else w.shape[0]
        if b is not None and (b.dim() != 1 or b.shape[0] != channels or b.dtype != w.dtype):
            continue
        chain, scale, shift = _affine_chain(gm, node, w.dim(), channels, w.dtype)
        if not chain:
            continue
        # Per-channel factors in float64, the weight multiplied in its own dtype and layout
        # (channels-last stays channels-last): one pass over the weight, as onnxsim did it.
        w_data = w.detach()
        if not transposed and _exclusive(gm, node.args[1], node, owners, readers):
            # nothing else sees this tensor: scale it in place (no second copy of the weights)
            w_data.mul_(scale.to(w.dtype).reshape(-1, *([1] * (w.dim() - 1))))
            new_w = w
        elif transposed:  # [Cin, Cout/g, k...]: output channel g*(Cout/g)+j
            per = channels // groups
            factor = scale.to(w.dtype).reshape(groups, 1, per, *([1] * (w.dim() - 2)))
            new_w = (w_data.reshape(groups, w.shape[0] // groups, per, *w.shape[2:]) * factor).reshape(w.shape)
        else:
            new_w = w_data * scale.to(w.dtype).reshape(-1, *([1] * (w.dim() - 1)))
        new_b = (b.detach().to(torch.float64) * scale if b is not None else 0.0) + shift
        w_name = param_names.get(node.args[1].target, node.args[1].target)
        if new_w is not w:
            _set_tensor_arg(gm, node, 1, new_w, w_name, f"{node.args[1].target}_folded", readers)
        b_hint = f"{node.args[1].target}_bias" if node.args[2] is None else f"{node.args[2].target}_folded"
        b_name = param_names.get(node.args[2].target, b_hint) if node.args[2] is not None else f"{w_name}:bias"
        _set_tensor_arg(gm, node, 2, new_b.to(w.dtype), b_name, b_hint, readers)
        names.retire(chain, node)
        stats.folded += len(chain)


# --- 1b. the remaining inference BatchNormalizations -> one multiply-add ------------------------
def _batch_norms_to_affine(gm: fx.GraphModule, info: dict[str, ValueInfo], stats: FusionStats,
                           names: _ValueNames) -> None:
    """``BN(x) [* a + c ...] [relu]`` -> ``addcmul(shift, x, scale)`` [``relu_`` in place].

    Why: for channels-last activations ``F.batch_norm`` is about three times slower than
    ``torch.addcmul`` (per-channel constants folded at conversion time), and the ReLU can reuse
    the fresh result's memory. Densenet's pre-activation BN+ReLU pairs run twice as fast.
    """
    param_names: dict[str, str] = getattr(gm, "onnx_param_names", {})
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not rt_norm.batch_norm_inference or len(node.args) != 6:
            continue
        if node.kwargs or not isinstance(node.args[0], fx.Node):
            continue
        rank, value_dtype, _ = info.get(node.name, ValueInfo(None, None, None))
        params = [_const(gm, a) for a in node.args[1:5]]
        if rank is None or rank < 2 or any(p is None or p.dim() != 1 for p in params):
            continue
        channels = params[0].shape[0]
        dtype = params[0].dtype
        if (any(p.shape[0] != channels or p.dtype != dtype for p in params) or dtype not in (torch.float32, torch.float64)
                or value_dtype != dtype):
            continue
        s, b, m, v = (p.detach().to(torch.float64) for p in params)
        scale = s / torch.sqrt(v + float(node.args[5]))
        shift = b - m * scale
        chain, more_scale, more_shift = _affine_chain(gm, node, rank, channels, dtype)
        scale, shift = scale * more_scale, shift * more_scale + more_shift
        view = [1, channels] + [1] * (rank - 2)
        s_name = param_names.get(node.args[1].target, node.args[1].target)
        b_name = param_names.get(node.args[2].target, node.args[2].target)
        shift_node = _new_attr(gm, node, shift.to(dtype).reshape(view), f"{node.args[2].target}_shift", b_name)
        scale_node = _new_attr(gm, node, scale.to(dtype).reshape(view), f"{node.args[1].target}_scale", s_name)
        node.target = torch.addcmul
        node.args = (shift_node, node.args[0], scale_node)
        node.meta.pop("is_wrapped", None)
        if chain:
            names.retire(chain, node)
            stats.folded += len(chain)
        user = _only_user(node)
        if user is not None and user.target in _RELU and len(user.args) == 1 and not user.kwargs:
            user.target = torch.relu_  # the multiply-add's result is fresh and read only here
            stats.fused_relus += 1


# --- 2. conv2d [+ add] [+ relu] -> conv2d_fused ------------------------------------------------
def _fuse_conv2d(gm: fx.GraphModule, stats: FusionStats, names: _ValueNames) -> None:
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (torch.conv2d, F.conv2d) or node.kwargs:
            continue
        if len(node.args) != 7:
            continue
        x, weight, bias, stride, padding, dilation, groups = node.args
        w = _const(gm, weight)
        if (not isinstance(x, fx.Node) or w is None or w.dim() != 4 or w.dtype != torch.float32
                or (bias is not None and _const(gm, bias) is None)
                or not all(isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v)
                           for v in (stride, padding, dilation)) or not isinstance(groups, int)):
            continue
        chain: list[fx.Node] = []
        residual = None
        last = node
        user = _only_user(last)
        if user is not None and user.target in _ADD and not user.kwargs and len(user.args) == 2:
            other = user.args[1] if user.args[0] is last else user.args[0]
            if isinstance(other, fx.Node) and other is not last and other.op != "get_attr":
                residual = other
                chain.append(user)
                last = user
                stats.fused_adds += 1
        user = _only_user(last)
        relu = user is not None and user.target in _RELU and len(user.args) == 1 and not user.kwargs
        if relu:
            chain.append(user)
            last = user
            stats.fused_relus += 1
        clamp = _number_clamp(user, last) if residual is None and not relu else None
        if clamp is not None:
            chain.append(user)
            last = user
            stats.fused_clamps += 1
        activation = _activation(user, last) if residual is None and not relu and clamp is None else None
        if activation is not None:
            chain.append(user)
            last = user
            stats.fused_activations += 1
        node.target = rt_conv.conv2d_fused
        node.args = (x, weight, bias, list(stride), list(padding), list(dilation), groups)
        kwargs: dict[str, Any] = {}
        if residual is not None:
            kwargs["residual"] = residual
        if relu:
            kwargs["relu"] = True
        if clamp is not None:
            kwargs["clamp"] = clamp
        if activation is not None:
            kwargs["activation"] = activation
        node.kwargs = kwargs
        node.meta["is_wrapped"] = True  # fx.symbolic_trace keeps runtime helpers as leaf calls
        if chain:
            last.prepend(node)  # the residual may be computed after the convolution
            names.retire(chain, node)
        stats.fused_convs += 1


def _dilated_conv1ds(gm: fx.GraphModule, stats: FusionStats) -> None:
    """Dilated, ungrouped 1-D convolutions call :func:`runtime.conv.conv1d_dilated` (same
    arguments), which avoids PyTorch's slow dilated kernel on small inputs."""
    for node in gm.graph.nodes:
        if (node.op == "call_function" and node.target in (torch.conv1d, F.conv1d) and not node.kwargs
                and len(node.args) == 7 and node.args[6] == 1 and isinstance(node.args[5], (list, tuple))
                and len(node.args[5]) == 1 and node.args[5][0] != 1):
            node.target = rt_conv.conv1d_dilated
            node.args = (*node.args[:3], list(node.args[3]), list(node.args[4]), list(node.args[5]), 1)
            node.meta["is_wrapped"] = True  # fx.symbolic_trace keeps runtime helpers as leaf calls
            stats.dilated_conv1ds += 1


def _activation(user: Optional[fx.Node], value: fx.Node) -> Optional[str]:
    """The :data:`runtime.conv.ACTIVATIONS` name of ``user`` when it applies one to ``value`` alone."""
    if user is None or user.op != "call_function" or user.args != (value,):
        return None
    if user.target is F.gelu:
        approximate = user.kwargs.get("approximate", "none") if set(user.kwargs) <= {"approximate"} else None
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(approximate)
    return None if user.kwargs else _ACTIVATION_NAMES.get(user.target)


_ACTIVATION_NAMES = {F.silu: "silu", F.hardswish: "hardswish", torch.sigmoid: "sigmoid"}


def _number_clamp(user: Optional[fx.Node], value: fx.Node) -> Optional[list[float]]:
    """``[lo, hi]`` when ``user`` is ``torch.clamp(value, lo, hi)`` with finite numbers lo <= hi (ReLU6)."""
    if user is None or user.target is not torch.clamp or user.kwargs or len(user.args) != 3 or user.args[0] is not value:
        return None
    lo, hi = user.args[1], user.args[2]
    if not all(isinstance(v, float) and math.isfinite(v) for v in (lo, hi)) or lo > hi:
        return None
    return [lo, hi]


# --- 3. F.linear with a constant weight -> linear_prepacked ---------------------------------------
def _prepack_linears(gm: fx.GraphModule, stats: FusionStats) -> None:
    """``F.linear`` with a constant float32 weight becomes :func:`runtime.linalg.linear_prepacked`:
    the same call on oneDNN with the weight packed once (eager CPU inference; otherwise F.linear).

    Only for weights of a size that the packed path takes (``PACK_MIN_ELEMENTS`` to
    ``PACK_MAX_BYTES``): on the others the helper's checks are all it would add (a BERT of width
    64: 12 linear layers, 6% of its batch-1 latency).
    """
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not F.linear or node.kwargs or len(node.args) != 3:
            continue
        w = _const(gm, node.args[1])
        bias = node.args[2]
        if w is None or w.dim() != 2 or w.dtype != torch.float32 or (bias is not None and _const(gm, bias) is None):
            continue
        if not rt_linalg.PACK_MIN_ELEMENTS <= w.numel() <= rt_linalg.PACK_MAX_BYTES // w.element_size():
            continue
        node.target = rt_linalg.linear_prepacked
        node.meta["is_wrapped"] = True  # fx.symbolic_trace keeps runtime helpers as leaf calls
        stats.prepacked_linears += 1


# Fused convolutions whose weight is at most this size are stored channels-last; see below.
_RELAYOUT_FUSED_BYTES = 2**20


def _weights_channels_last(gm: fx.GraphModule) -> None:
    """Channels-last weights (see ``builder.channels_last_conv_weights``) where they pay off.

    ``conv2d_fused``'s oneDNN path packs the weight whatever its layout, so re-laying out every
    weight would only cost conversion time (0.25 s on vgg19). Its ``F.conv2d`` paths (small
    convolutions, :data:`runtime.conv.ONEDNN_MIN_MACS`; tracing and export) want a channels-last
    weight beside channels-last activations: with a channels-first one, a 3x3 convolution re-lays
    it out on every call (256 -> 256 at 4x4: 604 us instead of 247 us). Weights up to 1 MB cover
    every convolution small enough for that path at 7x7 and above. Transposed convolutions run
    channels-last only with such a weight (they have no packed path).
    """
    channels_last_conv_weights(gm, gm.graph, (torch.conv2d, F.conv2d, torch.conv_transpose2d, F.conv_transpose2d))
    channels_last_conv_weights(gm, gm.graph, (rt_conv.conv2d_fused,), max_bytes=_RELAYOUT_FUSED_BYTES)


# Targets whose result is a fresh tensor that shares memory with none of their inputs.
_FRESH_RESULT = (rt_conv.conv2d_fused, torch.conv2d, F.conv2d, torch.relu, F.relu, torch.add, operator.add,
                 rt_norm.batch_norm_inference)


def _mark_dead_residuals(gm: fx.GraphModule) -> None:
    """Let a fused convolution accumulate into its residual when that value dies there.

    Safe when the residual is a fresh tensor (no view of another value) and every other reader
    runs earlier; the verification interpreter copies each value when it is computed.
    """
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not rt_conv.conv2d_fused:
            continue
        residual = node.kwargs.get("residual")
        if not (isinstance(residual, fx.Node) and residual.op == "call_function" and residual.target in _FRESH_RESULT
                and residual is not node.args[0]):
            continue
        if all(user is node or (user.op != "output" and order[user] < order[node]) for user in residual.users):
            node.kwargs = {**node.kwargs, "residual_is_dead": True}


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    if len(node.users) != 1:
        return None
    user = next(iter(node.users))
    return user if user.op == "call_function" else None


# --- bookkeeping ---------------------------------------------------------------------------------
def value_info(gm: fx.GraphModule, graph: ir.Graph) -> dict[str, ValueInfo]:
    """fx node name -> rank, dtype and shape of the ONNX value it computes (graph inputs included),
    where shape inference knows the rank."""
    value_to_fx: dict[str, str] = getattr(gm, "onnx_value_to_fx", {})
    info: dict[str, ValueInfo] = {}
    values = list(graph.inputs) + [value for onnx_node in graph for value in onnx_node.outputs]
    for value in values:
        fx_name = value_to_fx.get(value.name)
        if fx_name is None or value.shape is None:
            continue
        try:
            dtype = None if value.dtype is None else torch_dtype(value.dtype.value)
        except Exception:  # types torch lacks: not fused anyway
            dtype = None
        shape = tuple(d if isinstance(d, int) else getattr(d, "value", None) for d in value.shape)
        info[fx_name] = ValueInfo(len(shape), dtype, shape)
    return info


def _drop_unused_attrs(gm: fx.GraphModule) -> None:
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    param_names: dict[str, str] = getattr(gm, "onnx_param_names", {})
    for table in (gm._parameters, gm._buffers):
        for name in [k for k in table if k not in used]:
            del table[name]
            param_names.pop(name, None)
