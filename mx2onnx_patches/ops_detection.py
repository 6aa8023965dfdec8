"""Detection ops with MXNet 1.9.1's exact semantics (CPU kernels, src/operator/contrib).

- ``_contrib_box_nms`` (repaired): the stock translation ran one class-blind NonMaxSuppression
  whatever ``id_index``/``force_suppress`` said, used ``topk`` as a cap on the boxes kept
  *after* NMS (MXNet keeps the ``topk`` best candidates *before* it), and refused
  ``background_id`` and a format change. MXNet (bounding_box-inl.h): rows with score >
  ``valid_thresh`` (and, with ``id_index >= 0``, class != ``background_id``) are valid; they
  are stably sorted by descending score per batch (equal scores keep their input order), the
  first ``topk`` (-1: all) are the candidates; greedy NMS in that order (a kept candidate
  suppresses every later one whose IoU with it is > ``overlap_thresh``, of the same class
  unless ``force_suppress`` or ``id_index < 0``, classes compared as ``int``); the output has
  the input's shape, kept rows first, then rows of -1; ``in_format != out_format`` re-encodes
  the boxes except rows whose first coordinate is negative (MXNet skips those); ``topk=0``
  returns the input unchanged.
- ``_contrib_MultiBoxDetection`` (added): SSD detections of MXNet's own SSD examples.
- ``_contrib_box_decode`` (repaired: bit for bit), ``_contrib_box_iou``, ``_contrib_box_encode``,
  ``_contrib_bipartite_matching`` (added), ``_contrib_ROIAlign`` (repaired: every option).
- ``_contrib_DeformableConvolution`` (DCNv1) and ``_contrib_ModulatedDeformableConvolution``
  (DCNv2) (added) as ONNX DeformConv (opset 19+), whose offset layout (per offset group, per
  kernel tap, (dy, dx)) and mask layout are MXNet's; refused below opset 19.

The NMS ops are written out in plain ONNX ops rather than ONNX NonMaxSuppression, whose IoU
arithmetic is left to the runtime (onnxruntime flips inverted boxes and derives center-format
areas from corners; onnx2x's PyTorch runtime computes in float64): ONNX TopK breaks ties by
lower index, which is MXNet's stable order; IoU is computed with MXNet's own operations and
operand order in the input's dtype (C++ ternaries as Where, so NaNs behave alike), so the
suppression decisions are MXNet's bit for bit; the greedy pass is a Loop (it is sequential).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

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

    def unsqueeze(self, x: str, axis: int) -> str:
        if self.e.opset >= 13:
            return self.op("Unsqueeze", [x, self.scalar([axis], np.int64)])
        return self.op("Unsqueeze", [x], axes=[axis])

    def reduce_max(self, x: str, axis: int) -> str:
        """ReduceMax over one axis, kept (axes an attribute before opset 18, an input after)."""
        if self.e.opset >= 18:
            return self.op("ReduceMax", [x, self.scalar([axis], np.int64)], keepdims=1)
        return self.op("ReduceMax", [x], axes=[axis], keepdims=1)

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


def _box_edges(e: Emitter, boxes: str, center: bool) -> tuple[str, str, str]:
    """(low, high, area) of boxes given coordinate-major ([4, ...]) as MXNet's box kernels
    compute them: low/high [2 (x, y), ...] are the edges (center boxes: x -/+ w/2), the area is
    0 when a width or height is negative (BoxArea), else width * height (center: the given ones)."""
    first = e.slice(boxes, [0], [2], [0])
    second = e.slice(boxes, [2], [4], [0])
    if center:
        half = e.op("Div", [second, e.scalar(2)])
        low, high = e.op("Sub", [first, half]), e.op("Add", [first, half])
        size = second
    else:
        low, high = first, second
        size = e.op("Sub", [second, first])
    width = e.op("Gather", [size, e.scalar(0, np.int64)], axis=0)
    height = e.op("Gather", [size, e.scalar(1, np.int64)], axis=0)
    zero = e.scalar(0)
    negative = e.op("Or", [e.op("Less", [width, zero]), e.op("Less", [height, zero])])
    return low, high, e.op("Where", [negative, zero, e.op("Mul", [width, height])])


def _intersection_union(g: Any, center: bool, a: dict, b: dict) -> tuple[str, str]:
    """MXNet's Intersect(a, b) over x times over y, and area(a) + area(b) - intersection.

    ``a``/``b``: ``low``/``high`` [2 (x, y), ...] and ``area`` [...], broadcasting; operand
    order as in MXNet's kernels (``a`` is the reference box, or box_iou's left-hand side).
    """
    if center:  # left = bl > al ? bl : al; right = br < ar ? br : ar
        left, right = _pick(g, "Greater", b["low"], a["low"]), _pick(g, "Less", b["high"], a["high"])
    else:  # left = a1 > b1 ? a1 : b1; right = a2 < b2 ? a2 : b2
        left, right = _pick(g, "Greater", a["low"], b["low"]), _pick(g, "Less", a["high"], b["high"])
    zero = g.scalar(0)
    span = g.op("Sub", [right, left])
    span = g.op("Where", [g.op("Greater", [span, zero]), span, zero])
    intersect = g.op("Mul", [g.op("Gather", [span, g.scalar(0, np.int64)], axis=0),
                             g.op("Gather", [span, g.scalar(1, np.int64)], axis=0)])
    return intersect, g.op("Sub", [g.op("Add", [a["area"], b["area"]]), intersect])


class _Candidates:
    """Per candidate: edges low and high [2 (x, y), B, K], area [B, K], class [B, K] when per class.

    x and y lead so that a reference's edges broadcast against all candidates' along
    contiguous rows (onnxruntime broadcasts a trailing dimension of 2 element by element).
    """

    def __init__(self, e: Emitter, p: _NmsParams, rows: str) -> None:
        boxes = e.op("Transpose", [e.slice(rows, [p.coord_start], [p.coord_start + 4], [2])], perm=[2, 0, 1])
        self.low, self.high, self.area = _box_edges(e, boxes, p.in_format == "center")
        self.cls: Optional[str] = None
        if p.per_class:  # MXNet compares static_cast<int>(id)
            self.cls = e.op("Cast", [e.op("Gather", [rows, e.scalar(p.id_index, np.int64)], axis=2)],
                            to=onnx.TensorProto.INT32)


def _overlaps(g: Any, p: _NmsParams, ref: dict, pos: dict) -> str:
    """Whether ``ref`` suppresses ``pos`` (broadcasting): MXNet's nms_impl, operand for operand.

    ``ref``/``pos``: ``low``/``high`` [2 (x, y), ...], ``area`` [...], ``cls`` [...] (per class only).
    """
    intersect, union = _intersection_union(g, p.in_format == "center", ref, pos)
    hit = g.op("Greater", [g.op("Div", [intersect, union]), g.scalar(p.overlap_thresh)])
    if "cls" in ref:
        hit = g.op("And", [hit, g.op("Equal", [ref["cls"], pos["cls"]])])
    return hit


def _greedy_suppression(e: Emitter, fields: dict, suppresses: Callable[[_Body, dict, dict], str], alive: str,
                        positions: str, k: int) -> str:
    """Greedy suppression over candidates sorted best first: keep mask [B, K] (bool).

    ``fields``: name -> (per-candidate tensor, L): [B, K] when L is 0, else [L, B, K];
    ``suppresses(body, ref, every)`` gives [B, K] bool: whether the reference (each field
    gathered at its position, K axis kept as 1) suppresses each candidate (``every``: name ->
    tensor). ``alive``: [B, K] the valid candidates (a
    prefix); ``positions``: [1, K] 0..K-1.

    A Loop visits the kept candidates in order (per batch, jumping to the next one still kept);
    each suppresses the later candidates it overlaps too much. One reference per iteration
    keeps memory at O(B K); precomputing all B K^2 overlaps measured slower in onnxruntime
    (K=6000: 1.7 s against 0.9 s), where the Loop's per-iteration cost dominates.
    """
    body = _Body(e)
    cond, keep, current = e.tmp("cond"), e.tmp("keep"), e.tmp("ref")  # current: [B, 1] int64
    ref, every = {}, {}
    for name, (value, lead) in fields.items():
        every[name] = value
        if lead:
            at = body.op("Expand", [body.unsqueeze(current, 0), body.scalar([lead, 1, 1], np.int64)])
            ref[name] = body.op("GatherElements", [value, at], axis=2)
        else:
            ref[name] = body.op("GatherElements", [value, current], axis=1)
    row = suppresses(body, ref, every)
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
    keep = alive
    if p.can_suppress():
        c = _Candidates(e, p, rows)
        fields = {"low": (c.low, 2), "high": (c.high, 2), "area": (c.area, 0)}
        if c.cls is not None:
            fields["cls"] = (c.cls, 0)
        keep = _greedy_suppression(e, fields, lambda g, ref, every: _overlaps(g, p, ref, every), alive, positions, k)

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
# _contrib_MultiBoxDetection (SSD heads of MXNet's own examples)
# ----------------------------------------------------------------------------------------------

def _std_min(g: Any, a: str, b: str) -> str:
    """std::min(a, b): (b < a) ? b : a."""
    return g.op("Where", [g.op("Less", [b, a]), b, a])


def _std_max(g: Any, a: str, b: str) -> str:
    """std::max(a, b): (a < b) ? b : a."""
    return g.op("Where", [g.op("Less", [a, b]), b, a])


def _multibox_boxes(e: Emitter, loc: str, anchors: str, variances: Sequence[float], clip: bool) -> str:
    """MXNet's TransformLocations: (B, A, 4) corners from anchors (A, 4) and deltas (B, A, 4)."""
    low, high = e.slice(anchors, [0], [2], [1]), e.slice(anchors, [2], [4], [1])
    size = e.op("Sub", [high, low])
    centre = e.op("Div", [e.op("Add", [low, high]), e.scalar(2)])
    dtype = e.dtype()
    shift = e.op("Mul", [e.slice(loc, [0], [2], [2]), e.const(np.array(variances[:2], dtype=dtype), hint="var")])
    middle = e.op("Add", [e.op("Mul", [shift, size]), centre])
    scale = e.op("Mul", [e.slice(loc, [2], [4], [2]), e.const(np.array(variances[2:], dtype=dtype), hint="var")])
    grown = e.op("Cast", [e.op("Exp", [e.cast(scale, np.float64)])], to=e.onnx_dtype())  # std::exp(float)
    half = e.op("Div", [e.op("Mul", [grown, size]), e.scalar(2)])
    boxes = e.op("Concat", [e.op("Sub", [middle, half]), e.op("Add", [middle, half])], axis=2)
    if clip:  # std::max(0, std::min(1, v))
        boxes = _std_max(e, e.scalar(0), _std_min(e, e.scalar(1), boxes))
    return boxes


def _multibox_suppresses(g: Any, threshold: np.float32, per_class: bool, ref: dict, every: dict) -> str:
    """MXNet's CalculateOverlap(ref, candidate) >= nms_threshold (same class unless forced).

    Boxes are coordinate-major [4, ...]; unlike box_nms, areas are not clipped at 0 and the IoU
    is 0 when the union is <= 0.
    """
    def corners(boxes: str) -> tuple[str, str]:  # [4, ...] -> (x0, y0), (x1, y1) as [2, ...]
        return (g.op("Gather", [boxes, g.scalar([0, 1], np.int64)], axis=0),
                g.op("Gather", [boxes, g.scalar([2, 3], np.int64)], axis=0))

    (a_low, a_high), (b_low, b_high) = corners(ref["box"]), corners(every["box"])
    zero = g.scalar(0)
    span = _std_max(g, zero, g.op("Sub", [_std_min(g, a_high, b_high), _std_max(g, a_low, b_low)]))

    def along(x: str, axis: int) -> str:
        return g.op("Gather", [x, g.scalar(axis, np.int64)], axis=0)

    intersect = g.op("Mul", [along(span, 0), along(span, 1)])
    a_size, b_size = g.op("Sub", [a_high, a_low]), g.op("Sub", [b_high, b_low])
    union = g.op("Sub", [g.op("Add", [g.op("Mul", [along(a_size, 0), along(a_size, 1)]),
                                     g.op("Mul", [along(b_size, 0), along(b_size, 1)])]), intersect])
    iou = g.op("Where", [g.op("LessOrEqual", [union, zero]), zero, g.op("Div", [intersect, union])])
    hit = g.op("GreaterOrEqual", [iou, g.scalar(threshold)])
    if per_class:
        hit = g.op("And", [hit, g.op("Equal", [ref["cls"], every["cls"]])])
    return hit


@translation("_contrib_MultiBoxDetection", since=12)
def convert_multibox_detection(node, **kwargs):
    """SSD detections (B, A, 6) [id, score, xmin, ymin, xmax, ymax] as MXNet's CPU kernel makes them.

    MXNet has no translation. Per anchor: the best foreground class (the first of equal scores,
    class 0 is the background whatever ``background_id`` says), dropped when its score <
    ``threshold``; boxes decoded with ``variances`` and clipped to [0, 1]; the valid rows are
    packed in anchor order, the rest are -1. With 0 < ``nms_threshold`` <= 1 they are then
    stably sorted by score, the first ``nms_topk`` (-1: all) go through greedy NMS (IoU >=
    threshold, same class unless ``force_suppress``), which sets a suppressed row's id to -1
    and leaves the row in place; valid rows past ``nms_topk`` keep their packed order, id -1.
    """
    e = Emitter(node, kwargs)
    cls_prob, loc_pred, anchor = e.inputs[:3]
    _, classes, count = e.need_input_shape(0)
    threshold = np.float32(e.attr_float("threshold", 0.01))
    nms_threshold = np.float32(e.attr_float("nms_threshold", 0.5))
    nms_topk = e.attr_int("nms_topk", -1)
    variances = [np.float32(v) for v in e.attr_tuple("variances", (0.1, 0.1, 0.2, 0.2))]
    if len(variances) != 4:
        raise e.fail(f"variances {tuple(variances)} must have 4 values")
    dtype = e.dtype()

    if classes < 2:  # no foreground class: every row is -1
        shape = e.op("Concat", [e.dims(cls_prob, 0, 1), e.ints([count, 6], "rows")], axis=0)
        e.op("Expand", [e.const(np.full((1, 1, 1), -1, dtype=dtype), hint="minus_one"), shape], e.name)
        return e.done()
    # best foreground class per anchor: MXNet's loop keeps the first score > the best so far (> -1)
    foreground = e.slice(cls_prob, [1], [classes], [1])
    foreground = e.op("Where", [e.op("IsNaN", [foreground]), e.scalar(-np.inf), foreground])
    best = e.reduce("ReduceMax", foreground, [1], keepdims=False)  # [B, A]
    found = e.op("Greater", [best, e.scalar(-1)])
    score = e.op("Where", [found, best, e.scalar(-1)])
    valid = e.op("And", [found, e.op("Not", [e.op("Less", [score, e.scalar(threshold)])])])
    class_id = e.cast(e.op("ArgMax", [foreground], axis=1, keepdims=0), dtype)  # MXNet's id - 1
    class_id = e.op("Where", [valid, class_id, e.scalar(-1)])
    anchors = e.op("Reshape", [anchor, e.ints([count, 4], "anchors")])
    loc = e.op("Reshape", [loc_pred, e.ints([-1, count, 4], "loc")])
    boxes = _multibox_boxes(e, loc, anchors, variances, e.attr_bool("clip", True))
    rows = e.op("Concat", [e.unsqueeze(class_id, [2]), e.unsqueeze(score, [2]), boxes], axis=2)  # [B, A, 6]

    # valid rows first, in anchor order; the rest -1
    positions = e.const(np.arange(count, dtype=np.int64).reshape(1, count), hint="positions")
    moved = e.op("Where", [valid, positions, e.op("Add", [positions, e.scalar(count, np.int64)])])
    _, packed = e.op("TopK", [moved, e.ints([count], "k")], n_out=2, axis=1, largest=0, sorted=1)
    valid_count = e.reduce("ReduceSum", e.cast(valid, np.int64), [1], keepdims=True)  # [B, 1]
    filled = e.op("Less", [positions, valid_count])
    packed_rows = e.op("GatherND", [rows, e.unsqueeze(packed, [2])], batch_dims=1)
    packed_rows = e.op("Where", [e.unsqueeze(filled, [2]), packed_rows, e.scalar(-1)])
    if not 0 < nms_threshold <= 1:
        e.op("Identity", [packed_rows], e.name)
        return e.done()

    # stable sort by score, greedy NMS over the first nms_topk
    packed_score = e.op("Gather", [packed_rows, e.scalar(1, np.int64)], axis=2)
    key = e.op("Where", [filled, packed_score, e.scalar(-np.inf)])
    _, order = e.op("TopK", [key, e.ints([count], "k")], n_out=2, axis=1, largest=1, sorted=1)
    ranked = e.op("GatherND", [packed_rows, e.unsqueeze(order, [2])], batch_dims=1)
    k = count if nms_topk <= 0 else min(count, nms_topk)
    head = ranked if k == count else e.slice(ranked, [0], [k], [1])
    head_positions = positions if k == count else e.const(np.arange(k, dtype=np.int64).reshape(1, k), hint="positions")
    alive = e.op("Less", [head_positions, valid_count])
    per_class = not e.attr_bool("force_suppress", False)
    fields = {"box": (e.op("Transpose", [e.slice(head, [2], [6], [2])], perm=[2, 0, 1]), 4)}
    if per_class:
        fields["cls"] = (e.op("Gather", [head, e.scalar(0, np.int64)], axis=2), 0)
    keep = _greedy_suppression(e, fields, lambda g, ref, every: _multibox_suppresses(g, nms_threshold, per_class,
                                                                                      ref, every),
                               alive, head_positions, k)
    head_id = e.op("Gather", [head, e.scalar(0, np.int64)], axis=2)
    head_id = e.op("Where", [e.op("Or", [keep, e.op("Not", [alive])]), head_id, e.scalar(-1)])
    head = e.op("Concat", [e.unsqueeze(head_id, [2]), e.slice(head, [1], [6], [2])], axis=2)
    if k == count:
        e.op("Identity", [head], e.name)
        return e.done()
    tail = e.slice(packed_rows, [k], [count], [1])  # past nms_topk: packed order, id -1
    tail_id = e.op("Sub", [e.op("Mul", [e.slice(tail, [0], [1], [2]), e.scalar(0)]), e.scalar(1)])
    tail = e.op("Concat", [tail_id, e.slice(tail, [1], [6], [2])], axis=2)
    e.op("Concat", [head, tail], e.name, axis=1)
    return e.done()


# ----------------------------------------------------------------------------------------------
# box_iou, box_encode, ROIAlign
# ----------------------------------------------------------------------------------------------

@translation("_contrib_box_iou", since=12)
def convert_box_iou(node, **kwargs):
    """IoU of every lhs box with every rhs box: shape lhs[:-1] + rhs[:-1] (MXNet has no translation).

    MXNet's compute_overlap: 0 where the intersection is <= 0, else intersection / union, with
    the NMS kernel's Intersect and BoxArea.
    """
    e = Emitter(node, kwargs)
    center = e.attr_str("format", "corner") == "center"
    lhs, rhs = e.inputs[0], e.inputs[1]

    def boxes(x: str, new_axis: int) -> dict:
        """Edges [2, n] and areas [n] with a new axis at ``new_axis`` of [L, R] (1: lhs, 0: rhs)."""
        flat = e.op("Transpose", [e.op("Reshape", [x, e.ints([-1, 4], "boxes")])], perm=[1, 0])  # [4, n]
        low, high, area = _box_edges(e, flat, center)
        return {"low": e.unsqueeze(low, [new_axis + 1]), "high": e.unsqueeze(high, [new_axis + 1]),
                "area": e.unsqueeze(area, [new_axis])}

    intersect, union = _intersection_union(e, center, boxes(lhs, 1), boxes(rhs, 0))  # [L, R]
    iou = e.op("Where", [e.op("LessOrEqual", [intersect, e.scalar(0)]), e.scalar(0),
                         e.op("Div", [intersect, union])])
    shape = e.op("Concat", [e.dims(lhs, 0, -1), e.dims(rhs, 0, -1)], axis=0)
    e.op("Reshape", [iou, shape], e.name)
    return e.done()


@translation("_contrib_box_decode", since=12)
def convert_box_decode(node, **kwargs):
    """Boxes from regression deltas and anchors, in MXNet's operation order (bit for bit).

    The stock translation computes the same formula in another order (and exp in float), which
    moves about 2% of the coordinates by an ulp or two; box_nms downstream is discontinuous in
    them. MXNet (box_decode kernel): anchors (1, N, 4) as centers (``format='corner'``: from the
    corners, a + w * 0.5); x, y = d * std * anchor_size + anchor_center; w, h = exp(min(d * std,
    clip)) * anchor_size * 0.5 with exp in double precision, clip only when > 0; out: corners.
    """
    e = Emitter(node, kwargs)
    stds = [np.float32(e.attr_float(f"std{i}", 1.0)) for i in range(4)]
    clip = np.float32(e.attr_float("clip", -1.0))
    corner = e.attr_str("format", "center") == "corner"
    deltas, anchors = e.inputs[0], e.inputs[1]
    n = e.need_input_shape(0)[1]
    anchors = e.op("Reshape", [anchors, e.ints([1, n, 4], "anchors")])
    first, second = e.slice(anchors, [0], [2], [2]), e.slice(anchors, [2], [4], [2])
    if corner:
        size = e.op("Sub", [second, first])
        centre = e.op("Add", [first, e.op("Mul", [size, e.scalar(0.5)])])
    else:
        centre, size = first, second
    dtype = e.dtype()
    shift = e.op("Mul", [e.slice(deltas, [0], [2], [2]), e.const(np.array(stds[:2], dtype=dtype), hint="std")])
    middle = e.op("Add", [e.op("Mul", [shift, size]), centre])
    scale = e.op("Mul", [e.slice(deltas, [2], [4], [2]), e.const(np.array(stds[2:], dtype=dtype), hint="std")])
    if clip > 0:
        limit = e.scalar(clip)
        scale = e.op("Where", [e.op("Less", [scale, limit]), scale, limit])
    grown = e.op("Cast", [e.op("Exp", [e.cast(scale, np.float64)])], to=e.onnx_dtype())
    half = e.op("Mul", [e.op("Mul", [grown, size]), e.scalar(0.5)])
    e.op("Concat", [e.op("Sub", [middle, half]), e.op("Add", [middle, half])], e.name, axis=2)
    return e.done()


@translation("_contrib_box_encode", since=12)
def convert_box_encode(node, **kwargs):
    """Training targets (B, N, 4) and masks from matched reference boxes (MXNet has no translation).

    Inputs: samples (B, N) (> 0.5: positive), matches (B, N), anchors (B, N, 4), refs (B, M, 4),
    means (4,), stds (4,). For positives: ((ref_center - anchor_center) / anchor_size - mean) /
    std for x and y, (log(ref_size / anchor_size) - mean) / std for w and h; 0 elsewhere.
    """
    e = Emitter(node, kwargs)
    samples, matches, anchors, refs, means, stds = e.inputs[:6]
    m = e.need_input_shape(3)[1]
    # unmatched anchors (match -1) read some reference in MXNet too; their targets are 0 anyway
    index = e.op("Clip", [e.cast(matches, np.int64), e.scalar(0, np.int64), e.scalar(m - 1, np.int64)])
    index = e.op("Expand", [e.unsqueeze(index, [2]), e.ints([1, 1, 4], "four")])
    matched = e.op("GatherElements", [refs, index], axis=1)  # (B, N, 4)

    def centre_size(boxes: str) -> tuple[str, str]:
        low, high = e.slice(boxes, [0], [2], [2]), e.slice(boxes, [2], [4], [2])
        size = e.op("Sub", [high, low])
        return e.op("Add", [low, e.op("Mul", [size, e.scalar(0.5)])]), size

    ref_centre, ref_size = centre_size(matched)
    anchor_centre, anchor_size = centre_size(anchors)
    shift = e.op("Div", [e.op("Sub", [ref_centre, anchor_centre]), anchor_size])
    scale = e.op("Log", [e.op("Div", [ref_size, anchor_size])])
    raw = e.op("Div", [e.op("Sub", [e.op("Concat", [shift, scale], axis=2), means]), stds])
    positive = e.op("Greater", [samples, e.scalar(0.5)])
    mask = e.op("Expand", [e.unsqueeze(e.op("Cast", [positive], to=e.onnx_dtype()), [2]), e.ints([1, 1, 4], "four")])
    targets, masks = e.output_names(2)
    e.op("Where", [e.op("Greater", [mask, e.scalar(0.5)]), raw, e.scalar(0)], targets)
    e.op("Identity", [mask], masks)
    return e.done()


@translation("_contrib_bipartite_matching", since=12)
def convert_bipartite_matching(node, **kwargs):
    """Greedy matching of rows and columns of a score matrix (MXNet has no translation).

    MXNet: per batch, entries are stably sorted by score (descending unless ``is_ascend``);
    walking them in order, an entry whose row and column are both free is matched if its score
    is > ``threshold`` (< when ascending), else the walk stops; with ``topk`` > 0 it stops once
    more than ``topk`` matches are made (so topk + 1 are kept, as MXNet does). Outputs: the
    column matched to each row and the row matched to each column, -1 where none. The Loop
    jumps from match to match (at most min(rows, cols) iterations).
    """
    e = Emitter(node, kwargs)
    shape = e.need_input_shape(0)
    rows, cols = shape[-2], shape[-1]
    if not e.has("threshold"):
        raise e.fail("bipartite_matching needs threshold")
    threshold = np.float32(e.attr_float("threshold", 0.0))
    ascend = e.attr_bool("is_ascend", False)
    topk = e.attr_int("topk", -1)
    n = rows * cols
    scores = e.op("Reshape", [e.inputs[0], e.ints([-1, n], "flat")])  # [B, R*C]
    ordered, order = e.op("TopK", [scores, e.ints([n], "n")], n_out=2, axis=1, largest=int(not ascend), sorted=1)
    row_of = e.op("Div", [order, e.scalar(cols, np.int64)])
    col_of = e.op("Mod", [order, e.scalar(cols, np.int64)])
    row_ids = e.const(np.arange(rows, dtype=np.int64).reshape(1, rows), hint="row_ids")
    col_ids = e.const(np.arange(cols, dtype=np.int64).reshape(1, cols), hint="col_ids")

    body = _Body(e)
    cond, row_match, col_match, active, count = (e.tmp(h) for h in ("cond", "row_match", "col_match", "active",
                                                                    "count"))
    minus_one = body.scalar(-1)
    row_free = body.op("Equal", [body.op("GatherElements", [row_match, row_of], axis=1), minus_one])
    col_free = body.op("Equal", [body.op("GatherElements", [col_match, col_of], axis=1), minus_one])
    free = body.op("Cast", [body.op("And", [row_free, col_free])], to=onnx.TensorProto.INT32)
    first = body.op("ArgMax", [free], axis=1, keepdims=1)  # [B, 1] the best free entry
    found = body.op("Cast", [body.reduce_max(free, 1)], to=onnx.TensorProto.BOOL)
    score = body.op("GatherElements", [ordered, first], axis=1)
    good = body.op("Less" if ascend else "Greater", [score, body.scalar(threshold)])
    take = body.op("And", [body.op("And", [active, found]), good])
    row = body.op("GatherElements", [row_of, first], axis=1)
    col = body.op("GatherElements", [col_of, first], axis=1)
    dtype = e.onnx_dtype()
    new_row_match = body.op("Where", [body.op("And", [body.op("Equal", [row_ids, row]), take]),
                                      body.op("Cast", [col], to=dtype), row_match])
    new_col_match = body.op("Where", [body.op("And", [body.op("Equal", [col_ids, col]), take]),
                                      body.op("Cast", [row], to=dtype), col_match])
    new_count = body.op("Add", [count, body.op("Cast", [take], to=onnx.TensorProto.INT64)])
    still = take
    if topk > 0:
        still = body.op("And", [still, body.op("LessOrEqual", [new_count, body.scalar(topk, np.int64)])])
    more = body.op("Cast", [body.op("ReduceMax", [body.op("Cast", [still], to=onnx.TensorProto.INT32)],
                                    keepdims=0)], to=onnx.TensorProto.BOOL)
    graph = body.graph(
        [helper.make_tensor_value_info(e.tmp("it"), onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info(cond, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(row_match, dtype, None), helper.make_tensor_value_info(col_match, dtype, None),
         helper.make_tensor_value_info(active, onnx.TensorProto.BOOL, None),
         helper.make_tensor_value_info(count, onnx.TensorProto.INT64, None)],
        [helper.make_tensor_value_info(more, onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info(new_row_match, dtype, None),
         helper.make_tensor_value_info(new_col_match, dtype, None),
         helper.make_tensor_value_info(still, onnx.TensorProto.BOOL, None),
         helper.make_tensor_value_info(new_count, onnx.TensorProto.INT64, None)])
    batch = e.dims(scores, 0, 1)

    def filled(value: Any, dtype: Any, width: int) -> str:
        """[B, width] of ``value``."""
        return e.op("Expand", [e.const(np.full((1, width), value, dtype=dtype), hint="fill"),
                               e.op("Concat", [batch, e.ints([width], "width")], axis=0)])

    start_rows, start_cols = filled(-1, e.dtype(), rows), filled(-1, e.dtype(), cols)
    start_active, zeros = filled(True, np.bool_, 1), filled(0, np.int64, 1)
    trips = e.const(np.int64(min(rows, cols)), hint="trips")
    results = e.op("Loop", [trips, e.const(np.bool_(True), hint="go"), start_rows, start_cols, start_active, zeros],
                   n_out=4, body=graph)
    row_marker, col_marker = e.output_names(2)
    e.op("Reshape", [results[0], e.dims(e.inputs[0], 0, -1)], row_marker)
    e.op("Reshape", [results[1], e.op("Concat", [e.dims(e.inputs[0], 0, -2), e.dims(e.inputs[0], -1)], axis=0)],
         col_marker)
    return e.done()


@translation("_contrib_ROIAlign", since=12)
def convert_roi_align(node, **kwargs):
    """RoiAlign with all of MXNet's options.

    The stock translation passed MXNet's default ``sample_ratio=-1`` on (onnxruntime refuses
    it; 0 is ONNX's adaptive), refused ``aligned`` and ``position_sensitive``, and at opset 16+
    left RoiAlign's new default ``half_pixel`` in place of MXNet's ``output_half_pixel``. Rois
    with a negative batch index give zeros, as in MXNet.
    """
    e = Emitter(node, kwargs)
    pooled = [int(v) for v in e.attr_tuple("pooled_size")]
    if len(pooled) != 2:
        raise e.fail(f"pooled_size {tuple(pooled)} must have two values")
    spatial_scale = e.attr_float("spatial_scale", None)
    if spatial_scale is None:
        raise e.fail("ROIAlign needs spatial_scale")
    sample_ratio = max(e.attr_int("sample_ratio", -1), 0)
    aligned = e.attr_bool("aligned", False)
    sensitive = e.attr_bool("position_sensitive", False)
    attrs: dict[str, Any] = {}
    if e.opset >= 16:
        attrs["coordinate_transformation_mode"] = "half_pixel" if aligned else "output_half_pixel"
    elif aligned:
        raise UnsupportedOpError(e.op_type, e.opset, e.name, supported_versions=(16,),
                                 detail="aligned=True needs RoiAlign's coordinate_transformation_mode "
                                        "(ONNX opset 16); use --opset 16 or higher")
    data, rois = e.inputs[0], e.inputs[1]
    boxes = e.slice(rois, [1], [5], [1])
    batch = e.cast(e.op("Gather", [rois, e.scalar(0, np.int64)], axis=1), np.int64)  # truncates, as MXNet's int
    ignored = e.op("Less", [batch, e.scalar(0, np.int64)])
    batch = e.op("Where", [ignored, e.scalar(0, np.int64), batch])
    pooled_all = e.op("RoiAlign", [data, boxes, batch], mode="avg", output_height=pooled[0], output_width=pooled[1],
                      sampling_ratio=sample_ratio, spatial_scale=spatial_scale, **attrs)
    if sensitive:  # output channel c, bin k reads input channel c * bins + k
        bins = pooled[0] * pooled[1]
        channels = e.need_input_shape(0)[1]
        if channels % bins:
            raise e.fail(f"position_sensitive needs channels ({channels}) divisible by {bins} bins")
        grouped = e.op("Reshape", [pooled_all, e.ints([0, channels // bins, bins, bins], "grouped")])
        diagonal = e.const(np.arange(bins, dtype=np.int64).reshape(1, 1, 1, bins), hint="diagonal")
        target = e.op("Concat", [e.dims(grouped, 0, 2), e.ints([1, bins], "one_bins")], axis=0)
        picked = e.op("GatherElements", [grouped, e.op("Expand", [diagonal, target])], axis=2)
        pooled_all = e.op("Reshape", [picked, e.ints([0, channels // bins, pooled[0], pooled[1]], "pooled")])
    e.op("Where", [e.unsqueeze(ignored, [1, 2, 3]), e.scalar(0), pooled_all], e.name)
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
