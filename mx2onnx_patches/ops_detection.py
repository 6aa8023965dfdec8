"""Detection ops with MXNet 1.9.1's exact semantics: box NMS and deformable convolutions.

``_contrib_box_nms``: the stock translation ran one class-blind NonMaxSuppression whatever
``id_index``/``force_suppress`` said, used ``topk`` as a cap on the boxes kept *after* NMS
(MXNet keeps the ``topk`` best candidates *before* it), and refused ``background_id`` and a
format change. MXNet's CPU kernel (src/operator/contrib/bounding_box-inl.h):

1. rows whose score is > ``valid_thresh`` (and, with ``id_index >= 0``, whose class differs
   from ``background_id``) are valid; the others are dropped;
2. valid rows are stably sorted by descending score per batch (``std::stable_sort``: equal
   scores keep their input order), and the first ``topk`` (-1: all) are the candidates;
3. greedy NMS over the candidates in that order: a candidate still kept suppresses every later
   one whose IoU with it is > ``overlap_thresh`` (of the same class unless ``force_suppress``
   or ``id_index < 0``; classes compared as ``int``);
4. the output has the input's shape: the kept rows in order, then rows of -1; with
   ``in_format != out_format`` the boxes are re-encoded, except rows whose first coordinate is
   negative (MXNet's kernel skips those); ``topk=0`` returns the input unchanged.

The translation writes these steps out in plain ONNX ops rather than ONNX NonMaxSuppression,
whose IoU arithmetic is left to the runtime (onnxruntime flips inverted boxes and derives
center-format areas from corners; onnx2x's PyTorch runtime computes in float64): ONNX TopK breaks ties
by lower index, which is MXNet's stable order; IoU is computed with MXNet's own operations in
the input's dtype (ternaries as Where, so NaNs behave alike), so suppression decisions are the
same bit for bit; the greedy pass is a Loop over candidates (it is inherently sequential).

``_contrib_DeformableConvolution`` (DCNv1) and ``_contrib_ModulatedDeformableConvolution``
(DCNv2) map to ONNX DeformConv (opset 19+), whose offset layout (per offset group, per kernel
tap, (dy, dx)) and mask layout are MXNet's.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from common.errors import UnsupportedOpError

from .ops_common import Emitter
from .translations import translation

DEFORM_CONV_OPSET = 19


# ----------------------------------------------------------------------------------------------
# a Loop body built next to an Emitter
# ----------------------------------------------------------------------------------------------

class _Body:
    """Nodes of a subgraph (a Loop body), named from the emitter's namespace; constants inline.

    ``op`` and ``scalar`` have the emitter's signatures, so helpers can emit into either.
    """

    def __init__(self, e: Emitter) -> None:
        self.e = e
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.e.tmp(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.e.tmp(op_type), **attrs))
        return out

    def scalar(self, value: Any, dtype: Any = None) -> str:
        out = self.e.tmp("k")
        array = np.asarray(value, dtype=dtype or self.e.dtype())
        self.nodes.append(helper.make_node("Constant", [], [out], name=self.e.tmp("Constant"),
                                           value=onnx.numpy_helper.from_array(array, out)))
        return out

    def graph(self, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto]) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.e.tmp("body"), list(inputs), list(outputs))


def _pick(g: Any, compare: str, first: str, second: str) -> str:
    """``first <compare> second ? first : second``: MXNet's min/max, NaNs included."""
    return g.op("Where", [g.op(compare, [first, second]), first, second])


# ----------------------------------------------------------------------------------------------
# _contrib_box_nms
# ----------------------------------------------------------------------------------------------

class _NmsParams:
    """box_nms attributes with MXNet's defaults; thresholds as the float32 MXNet parses."""

    def __init__(self, e: Emitter) -> None:
        self.overlap_thresh = np.float32(e.attr_float("overlap_thresh", 0.5))
        self.valid_thresh = np.float32(e.attr_float("valid_thresh", 0.0))
        self.topk = e.attr_int("topk", -1)
        self.coord_start = e.attr_int("coord_start", 2)
        self.score_index = e.attr_int("score_index", 1)
        self.id_index = e.attr_int("id_index", -1)
        self.background_id = e.attr_int("background_id", -1)
        self.force_suppress = e.attr_bool("force_suppress", False)
        self.in_format = e.attr_str("in_format", "corner")
        self.out_format = e.attr_str("out_format", "corner")
        for key in ("in_format", "out_format"):
            if getattr(self, key) not in ("corner", "center"):
                raise e.fail(f"{key}={getattr(self, key)} is not supported (corner or center)")

    @property
    def per_class(self) -> bool:
        return self.id_index >= 0 and not self.force_suppress

    def can_suppress(self) -> bool:
        """Whether any IoU can exceed ``overlap_thresh``.

        In corner format the float IoU never exceeds 1 (the intersection is at most either area,
        as the same float operations give both, and the union at least the intersection), so a
        threshold >= 1 only sorts (GluonCV's FPN proposals use 2). Center-format widths from
        corners can round above the given width, so there it always runs.
        """
        return not (self.in_format == "corner" and self.overlap_thresh >= 1.0)


class _Candidates:
    """Per candidate: edges low and high [2 (x, y), B, K], area [B, K], class [B, K] when per class.

    As MXNet's NMS kernel computes them: center boxes give edges x -/+ w/2 and area w*h; the
    area is 0 when a width or height is negative (BoxArea). x and y lead so that a reference's
    edges broadcast against all candidates' along contiguous rows.
    """

    def __init__(self, e: Emitter, p: _NmsParams, rows: str) -> None:
        boxes = e.op("Transpose", [e.slice(rows, [p.coord_start], [p.coord_start + 4], [2])], perm=[2, 0, 1])
        first = e.slice(boxes, [0], [2], [0])  # [2, B, K]
        second = e.slice(boxes, [2], [4], [0])
        if p.in_format == "center":
            half = e.op("Div", [second, e.scalar(2)])
            self.low, self.high = e.op("Sub", [first, half]), e.op("Add", [first, half])
            size = second
        else:
            self.low, self.high = first, second
            size = e.op("Sub", [second, first])
        width = e.op("Gather", [size, e.scalar(0, np.int64)], axis=0)
        height = e.op("Gather", [size, e.scalar(1, np.int64)], axis=0)
        zero = e.scalar(0)
        negative = e.op("Or", [e.op("Less", [width, zero]), e.op("Less", [height, zero])])
        self.area = e.op("Where", [negative, zero, e.op("Mul", [width, height])])
        self.cls: Optional[str] = None
        if p.per_class:  # MXNet compares static_cast<int>(id)
            self.cls = e.op("Cast", [e.op("Gather", [rows, e.scalar(p.id_index, np.int64)], axis=2)],
                            to=onnx.TensorProto.INT32)


def _overlaps(g: Any, p: _NmsParams, ref: dict, pos: dict) -> str:
    """Whether ``ref`` suppresses ``pos`` (broadcasting): MXNet's nms_impl, operand for operand.

    ``ref``/``pos``: ``low``/``high`` [2 (x, y), ...], ``area`` [...], ``cls`` [...] or None.
    """
    if p.in_format == "center":  # left = bl > al ? bl : al; right = br < ar ? br : ar (a: the reference)
        left, right = _pick(g, "Greater", pos["low"], ref["low"]), _pick(g, "Less", pos["high"], ref["high"])
    else:  # left = a1 > b1 ? a1 : b1; right = a2 < b2 ? a2 : b2
        left, right = _pick(g, "Greater", ref["low"], pos["low"]), _pick(g, "Less", ref["high"], pos["high"])
    zero = g.scalar(0)
    span = g.op("Sub", [right, left])
    span = g.op("Where", [g.op("Greater", [span, zero]), span, zero])
    intersect = g.op("Mul", [g.op("Gather", [span, g.scalar(0, np.int64)], axis=0),
                             g.op("Gather", [span, g.scalar(1, np.int64)], axis=0)])
    union = g.op("Sub", [g.op("Add", [ref["area"], pos["area"]]), intersect])
    hit = g.op("Greater", [g.op("Div", [intersect, union]), g.scalar(p.overlap_thresh)])
    if ref["cls"] is not None:
        hit = g.op("And", [hit, g.op("Equal", [ref["cls"], pos["cls"]])])
    return hit


def _greedy_nms(e: Emitter, p: _NmsParams, c: _Candidates, alive: str, positions: str, k: int) -> str:
    """Greedy suppression over candidates sorted best first: keep mask [B, K] (bool).

    ``alive``: [B, K] the valid candidates (a prefix); ``positions``: [1, K] 0..K-1.

    A Loop visits the kept candidates in order (per batch, jumping to the next one still kept);
    each suppresses the later candidates whose overlap with it is too large. One reference per
    iteration keeps memory at O(B K); precomputing all B K^2 overlaps measured slower in
    onnxruntime (K=6000: 1.7 s against 0.9 s), where the Loop's per-iteration cost dominates.
    """
    body = _Body(e)
    cond, keep, current = e.tmp("cond"), e.tmp("keep"), e.tmp("ref")  # current: [B, 1] int64
    at = body.op("Expand", [_unsqueeze(body, e, current, 0), body.scalar([2, 1, 1], np.int64)])  # [2, B, 1]
    ref = {"low": body.op("GatherElements", [c.low, at], axis=2),
           "high": body.op("GatherElements", [c.high, at], axis=2),
           "area": body.op("GatherElements", [c.area, current], axis=1),
           "cls": None if c.cls is None else body.op("GatherElements", [c.cls, current], axis=1)}
    every = {"low": c.low, "high": c.high, "area": c.area, "cls": c.cls}
    row = _overlaps(body, p, ref, every)
    later = body.op("Greater", [positions, current])
    active = body.op("GatherElements", [keep, current], axis=1)  # the reference is still kept
    suppressed = body.op("And", [body.op("And", [row, later]), active])
    new_keep = body.op("And", [keep, body.op("Not", [suppressed])])
    waiting = body.op("Cast", [body.op("And", [new_keep, later])], to=onnx.TensorProto.INT32)
    following = body.op("ArgMax", [waiting], axis=1, keepdims=1)  # first kept after the reference
    more = body.op("Cast", [body.op("ReduceMax", [waiting], keepdims=0)], to=onnx.TensorProto.BOOL)
    graph = body.graph(
        [helper.make_tensor_value_info(e.tmp("it"), onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info(cond, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(keep, onnx.TensorProto.BOOL, None),
         helper.make_tensor_value_info(current, onnx.TensorProto.INT64, None)],
        [helper.make_tensor_value_info(more, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(new_keep, onnx.TensorProto.BOOL, None),
         helper.make_tensor_value_info(following, onnx.TensorProto.INT64, None)])
    alive_int = e.op("Cast", [alive], to=onnx.TensorProto.INT32)
    first = e.op("ArgMax", [alive_int], axis=1, keepdims=1)  # 0: the alive candidates come first
    any_alive = e.op("Cast", [e.op("ReduceMax", [alive_int], keepdims=0)], to=onnx.TensorProto.BOOL)
    keep_final, _ = e.op("Loop", [e.const(np.int64(k), hint="trips"), any_alive, alive, first], n_out=2,
                         body=graph)
    return keep_final


def _unsqueeze(body: _Body, e: Emitter, x: str, axis: int) -> str:
    if e.opset >= 13:
        return body.op("Unsqueeze", [x, body.scalar([axis], np.int64)])
    return body.op("Unsqueeze", [x], axes=[axis])


def _reencode(e: Emitter, boxes: str, to_center: bool) -> str:
    """MXNet's corner_to_center / center_to_corner on boxes [B, N, 4]; rows with a negative first
    coordinate (the -1 padding, and MXNet skips any such box) stay as they are."""
    a = e.slice(boxes, [0], [2], [2])
    b = e.slice(boxes, [2], [4], [2])
    two = e.scalar(2)
    if to_center:
        converted = e.op("Concat", [e.op("Div", [e.op("Add", [a, b]), two]), e.op("Sub", [b, a])], axis=2)
    else:
        half = e.op("Div", [b, two])
        converted = e.op("Concat", [e.op("Sub", [a, half]), e.op("Add", [a, half])], axis=2)
    first = e.slice(boxes, [0], [1], [2])
    return e.op("Where", [e.op("Less", [first, e.scalar(0)]), boxes, converted])


@translation("_contrib_box_nms", since=12)
def convert_box_nms(node, **kwargs):
    e = Emitter(node, kwargs)
    p = _NmsParams(e)
    shape = e.need_input_shape(0)
    if len(shape) < 2:
        raise e.fail(f"input of rank {len(shape)}: box_nms needs (..., num_boxes, box_width)")
    n, width = shape[-2], shape[-1]
    x = e.inputs[0]
    k = n if p.topk < 0 else min(n, p.topk)
    if k < 1:  # MXNet returns the input as it is
        e.op("Identity", [x], e.name)
        return e.done()
    data = e.op("Reshape", [x, e.ints([-1, n, width], "batched")])  # MXNet: leading dims are the batch

    def column(index: int) -> str:
        return e.op("Gather", [data, e.scalar(index, np.int64)], axis=2)  # [B, N]

    score = column(p.score_index)
    valid = e.op("Greater", [score, e.scalar(p.valid_thresh)])
    if p.id_index >= 0:
        not_background = e.op("Not", [e.op("Equal", [column(p.id_index), e.scalar(p.background_id)])])
        valid = e.op("And", [valid, not_background])
    minus_inf = e.scalar(-np.inf)
    key = e.op("Where", [valid, score, minus_inf])  # valid scores are > valid_thresh >= -inf
    best, order = e.op("TopK", [key, e.ints([k], "k")], n_out=2, axis=1, largest=1, sorted=1)
    alive = e.op("Greater", [best, minus_inf])
    rows = e.op("GatherND", [data, e.unsqueeze(order, [2])], batch_dims=1)  # [B, K, W]

    positions = e.const(np.arange(k, dtype=np.int64).reshape(1, k), hint="positions")
    keep = _greedy_nms(e, p, _Candidates(e, p, rows), alive, positions, k) if p.can_suppress() else alive

    # kept rows first, in candidate order: sort positions with the dropped ones moved past K
    moved = e.op("Where", [keep, positions, e.op("Add", [positions, e.const(np.int64(k), hint="k")])])
    _, packed = e.op("TopK", [moved, e.ints([k], "k")], n_out=2, axis=1, largest=0, sorted=1)
    kept_rows = e.op("GatherND", [rows, e.unsqueeze(packed, [2])], batch_dims=1)
    kept_count = e.reduce("ReduceSum", e.cast(keep, np.int64), [1], keepdims=True)  # [B, 1]
    filled = e.unsqueeze(e.op("Less", [positions, kept_count]), [2])
    out = e.op("Where", [filled, kept_rows, e.scalar(-1)])
    if k < n:
        out = e.op("Pad", [out, e.ints([0, 0, 0, 0, n - k, 0], "pads"), e.scalar(-1)], mode="constant")
    if p.in_format != p.out_format:
        pieces = []
        if p.coord_start > 0:
            pieces.append(e.slice(out, [0], [p.coord_start], [2]))
        pieces.append(_reencode(e, e.slice(out, [p.coord_start], [p.coord_start + 4], [2]),
                                to_center=p.out_format == "center"))
        if p.coord_start + 4 < width:
            pieces.append(e.slice(out, [p.coord_start + 4], [width], [2]))
        out = e.op("Concat", pieces, axis=2) if len(pieces) > 1 else pieces[0]
    e.op("Reshape", [out, e.shape(x)], e.name)
    return e.done()


# ----------------------------------------------------------------------------------------------
# deformable convolutions
# ----------------------------------------------------------------------------------------------

def _dcn1_sampling(e: Emitter, offset: str, kernel: Sequence[int], stride: Sequence[int], dilate: Sequence[int],
                   pad: Sequence[int]) -> tuple[str, str]:
    """DCNv1 offsets and a mask that make DeformConv sample the way MXNet's DCNv1 kernel does.

    MXNet's DCNv1 (deformable_im2col.h) differs from DCNv2 and ONNX at the border: a tap at
    (h, w) counts only when 0 <= h < H and 0 <= w < W (ONNX: -1 < h < H, blending with zeros),
    and a tap in the last row or column, h in [H-1, H), reads that row as it is (ONNX blends it
    with the zero row past the end). So taps outside MXNet's range get mask 0, and positions are
    clamped to H-1 / W-1 before going back to offsets. Positions are computed as MXNet does
    (integer base + offset, in the input's dtype), so the in/out decision is the same.
    """
    _, _, height, width = e.need_input_shape(0)
    _, channels, out_h, out_w = e.need_input_shape(1)
    kh, kw = kernel
    taps = kh * kw
    groups = channels // (2 * taps)
    base = np.zeros((groups, kh, kw, 2, out_h, out_w), dtype=np.float64)
    base[:, :, :, 0] = (np.arange(out_h) * stride[0] - pad[0])[None, None, None, :, None] + \
        (np.arange(kh) * dilate[0])[None, :, None, None, None]
    base[:, :, :, 1] = (np.arange(out_w) * stride[1] - pad[1])[None, None, None, None, :] + \
        (np.arange(kw) * dilate[1])[None, None, :, None, None]
    dtype = e.dtype(1)
    base = e.const(base.reshape(1, channels, out_h, out_w).astype(dtype), hint="dcn_base")
    size = np.tile(np.array([height, width], dtype=dtype), groups * taps).reshape(1, channels, 1, 1)
    last = e.const(size - 1, hint="dcn_last")
    position = e.op("Add", [base, offset])
    inside = e.op("And", [e.op("GreaterOrEqual", [position, e.scalar(0)]),
                          e.op("Less", [position, e.const(size, hint="dcn_size")])])
    pairs = e.op("Reshape", [e.op("Cast", [inside], to=e.onnx_dtype(1)),
                             e.ints([0, groups * taps, 2, out_h, out_w], "pairs")])
    mask = e.reduce("ReduceMin", pairs, [2], keepdims=False)  # both coordinates inside
    clamped = e.op("Where", [e.op("Greater", [position, last]), last, position])
    # taps outside sample at their base position instead (finite, so mask 0 gives 0 even for NaN offsets)
    return e.op("Where", [inside, e.op("Sub", [clamped, base]), e.scalar(0)]), mask


@translation(("_contrib_DeformableConvolution", "_contrib_ModulatedDeformableConvolution"), since=12)
def convert_deformable_convolution(node, **kwargs):
    """DCNv1 / DCNv2 as ONNX DeformConv; MXNet has no translation for either.

    Inputs: data, offset, [mask (DCNv2)], weight, [bias]. ``no_bias`` defaults to False for both.
    DCNv2 samples as ONNX does (zero outside, bilinear blend at the border); DCNv1 goes
    through :func:`_dcn1_sampling`.
    """
    e = Emitter(node, kwargs)
    if e.opset < DEFORM_CONV_OPSET:
        raise UnsupportedOpError(e.op_type, e.opset, e.name, supported_versions=(DEFORM_CONV_OPSET,),
                                 detail=f"ONNX has DeformConv from opset {DEFORM_CONV_OPSET}; "
                                        f"use --opset {DEFORM_CONV_OPSET} or higher")
    layout = e.attr_str("layout", None)
    if layout not in (None, "NCHW"):
        raise e.fail(f"layout {layout} is not supported (only NCHW)")
    kernel = [int(k) for k in e.attr_tuple("kernel")]
    if len(kernel) != 2:
        raise e.fail(f"kernel {tuple(kernel)}: only 2-D deformable convolution exists in MXNet and ONNX")

    def per_dim(key: str, default: int) -> list[int]:
        values = [default if v is None else int(v) for v in e.attr_tuple(key)]
        return values + [default] * (2 - len(values))

    stride, dilate, pad = per_dim("stride", 1), per_dim("dilate", 1), per_dim("pad", 0)
    modulated = e.op_type == "_contrib_ModulatedDeformableConvolution"
    data, offset = e.inputs[0], e.inputs[1]
    if modulated:
        mask = e.inputs[2]
    else:
        offset, mask = _dcn1_sampling(e, offset, kernel, stride, dilate, pad)
    weight_at = 3 if modulated else 2
    weight = e.inputs[weight_at]
    inputs = [data, weight, offset]
    if not e.attr_bool("no_bias", False):
        if len(e.inputs) <= weight_at + 1:
            raise e.fail("no_bias=False but no bias input")
        inputs.append(e.inputs[weight_at + 1])
    else:
        inputs.append("")
    inputs.append(mask)
    e.op("DeformConv", inputs, e.name, kernel_shape=kernel, strides=stride, dilations=dilate, pads=pad + pad,
         group=e.attr_int("num_group", 1), offset_group=e.attr_int("num_deformable_group", 1))
    return e.done()
