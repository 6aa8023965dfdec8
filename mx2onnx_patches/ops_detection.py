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
center-format areas from corners; other runtimes compute in float64): ONNX TopK breaks ties
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
    """Nodes of a subgraph (a Loop body), named from the emitter's namespace; constants inline."""

    def __init__(self, e: Emitter) -> None:
        self.e = e
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.e.tmp(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.e.tmp(op_type), **attrs))
        return out

    def const(self, value: Any, dtype: Any) -> str:
        out = self.e.tmp("k")
        tensor = onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), out)
        self.nodes.append(helper.make_node("Constant", [], [out], name=self.e.tmp("Constant"), value=tensor))
        return out

    def pick(self, compare: str, first: str, second: str) -> str:
        """``first <compare> second ? first : second``, MXNet's min/max (NaN picks ``second``)."""
        return self.op("Where", [self.op(compare, [first, second]), first, second])

    def graph(self, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto]) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.e.tmp("body"), list(inputs), list(outputs))


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


def _box_edges(e: Emitter, boxes: str, center: bool) -> tuple[str, str, str]:
    """(left-top, right-bottom, area) of boxes [..., 4] as MXNet's NMS kernel computes them.

    left-top and right-bottom are [2, ...] (x then y); area is 0 when a width or height is
    negative (BoxArea), else width * height (center format: the given ones).
    """
    first = e.slice(boxes, [0], [2], [-1])
    second = e.slice(boxes, [2], [4], [-1])
    if center:
        half = e.op("Div", [second, e.scalar(2)])
        low, high = e.op("Sub", [first, half]), e.op("Add", [first, half])
        size = second
    else:
        low, high = first, second
        size = e.op("Sub", [second, first])
    width = e.op("Gather", [size, e.const(np.int64(0), hint="x")], axis=-1)
    height = e.op("Gather", [size, e.const(np.int64(1), hint="y")], axis=-1)
    zero = e.scalar(0)
    negative = e.op("Or", [e.op("Less", [width, zero]), e.op("Less", [height, zero])])
    area = e.op("Where", [negative, zero, e.op("Mul", [width, height])])
    perm = [2, 0, 1]  # [B, K, 2] -> [2, B, K]
    return e.op("Transpose", [low], perm=perm), e.op("Transpose", [high], perm=perm), area


def _greedy_nms(e: Emitter, p: _NmsParams, cand_boxes: str, cand_class: Optional[str], alive: str,
                k: int) -> str:
    """Greedy suppression over candidates sorted best first: keep mask [B, K] (bool).

    One Loop iteration per reference candidate (up to the largest number of live candidates in
    a batch): a reference still kept suppresses the later candidates whose IoU with it, computed
    with MXNet's operations and operand order, is > ``overlap_thresh``.
    """
    center = p.in_format == "center"
    low, high, area = _box_edges(e, cand_boxes, center)
    live_count = e.reduce("ReduceSum", e.cast(alive, np.int64), [1], keepdims=False)
    trips = e.reduce("ReduceMax", live_count, [0], keepdims=False)
    positions = e.const(np.arange(k, dtype=np.int64).reshape(1, k), hint="positions")

    body = _Body(e)
    it, cond, keep = e.tmp("it"), e.tmp("cond"), e.tmp("keep")
    ref = body.op("Reshape", [it, body.const([1], np.int64)])
    ref_low = body.op("Gather", [low, ref], axis=2)  # [2, B, 1]
    ref_high = body.op("Gather", [high, ref], axis=2)
    if center:  # MXNet: left = bl > al ? bl : al, right = br < ar ? br : ar (a: reference)
        left, right = body.pick("Greater", low, ref_low), body.pick("Less", high, ref_high)
    else:  # left = a1 > b1 ? a1 : b1, right = a2 < b2 ? a2 : b2
        left, right = body.pick("Greater", ref_low, low), body.pick("Less", ref_high, high)
    zero = body.const(0, e.dtype())
    span = body.op("Sub", [right, left])
    span = body.op("Where", [body.op("Greater", [span, zero]), span, zero])
    span_x = body.op("Gather", [span, body.const(0, np.int64)], axis=0)
    span_y = body.op("Gather", [span, body.const(1, np.int64)], axis=0)
    intersect = body.op("Mul", [span_x, span_y])
    union = body.op("Sub", [body.op("Add", [body.op("Gather", [area, ref], axis=1), area]), intersect])
    iou = body.op("Div", [intersect, union])
    hit = body.op("Greater", [iou, body.const(p.overlap_thresh, e.dtype())])
    hit = body.op("And", [hit, body.op("Greater", [positions, it])])
    if cand_class is not None:
        hit = body.op("And", [hit, body.op("Equal", [body.op("Gather", [cand_class, ref], axis=1), cand_class])])
    hit = body.op("And", [hit, body.op("Gather", [keep, ref], axis=1)])
    new_keep = body.op("And", [keep, body.op("Not", [hit])])
    cond_out = body.op("Identity", [cond])
    graph = body.graph(
        [helper.make_tensor_value_info(it, onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info(cond, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(keep, onnx.TensorProto.BOOL, None)],
        [helper.make_tensor_value_info(cond_out, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(new_keep, onnx.TensorProto.BOOL, None)])
    return e.op("Loop", [trips, "", alive], body=graph)


def _reencode(e: Emitter, boxes: str, to_center: bool) -> str:
    """MXNet's corner_to_center / center_to_corner on [..., 4]; rows with a negative first
    coordinate (the -1 padding, and MXNet skips any such box) stay as they are."""
    a = e.slice(boxes, [0], [2], [-1])
    b = e.slice(boxes, [2], [4], [-1])
    two = e.scalar(2)
    if to_center:
        converted = e.op("Concat", [e.op("Div", [e.op("Add", [a, b]), two]), e.op("Sub", [b, a])], axis=-1)
    else:
        half = e.op("Div", [b, two])
        converted = e.op("Concat", [e.op("Sub", [a, half]), e.op("Add", [a, half])], axis=-1)
    first = e.slice(boxes, [0], [1], [-1])
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
        return e.op("Gather", [data, e.const(np.int64(index), hint="col")], axis=2)  # [B, N]

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

    if p.can_suppress():
        cand_boxes = e.slice(rows, [p.coord_start], [p.coord_start + 4], [2])
        cand_class = None
        if p.per_class:
            cand_class = e.op("Cast", [e.op("Gather", [rows, e.const(np.int64(p.id_index), hint="col")], axis=2)],
                              to=onnx.TensorProto.INT32)
        keep = _greedy_nms(e, p, cand_boxes, cand_class, alive, k)
    else:
        keep = alive

    # kept rows first, in candidate order: sort positions with the dropped ones moved past K
    positions = e.const(np.arange(k, dtype=np.int64).reshape(1, k), hint="positions")
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
    base = e.const(base.reshape(1, channels, out_h, out_w).astype(e.dtype(1)), hint="dcn_base")
    last = np.tile(np.array([height - 1, width - 1], dtype=e.dtype(1)), groups * taps).reshape(1, channels, 1, 1)
    last = e.const(last, hint="dcn_last")
    position = e.op("Add", [base, offset])
    inside = e.op("And", [e.op("GreaterOrEqual", [position, e.scalar(0)]),
                          e.op("LessOrEqual", [e.op("Floor", [position]), last])])
    both = e.op("Cast", [e.op("Reshape", [e.op("Cast", [inside], to=onnx.TensorProto.INT32),
                                          e.ints([0, groups * taps, 2, out_h, out_w], "pairs")])],
                to=e.onnx_dtype(1))
    mask = e.reduce("ReduceMin", both, [2], keepdims=False)
    clamped = e.op("Where", [e.op("Greater", [position, last]), last, position])
    return e.op("Sub", [clamped, base]), mask


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
