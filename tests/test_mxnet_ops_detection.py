"""MXNet detection ops (mx2onnx_patches/ops_detection.py) against MXNet's own forward.

box_nms must match MXNet bit for bit (atol=rtol=0): which boxes survive, their order (equal
scores keep their input order), the -1 padding. Each case also checks that its data exercises
what it claims (ties among kept rows, classes that would suppress each other, ...), so a
translation ignoring the feature fails. Deformable convolutions are floating-point convolutions:
compared within 1e-5, with offsets that move taps across the image border, where MXNet's DCNv1
and DCNv2 differ.
"""
from __future__ import annotations

import numpy as np
import pytest

from common.errors import UnsupportedOpError
from tests.support.mxnet_ops import check_export, export_to_onnx, mx, mxnet_forward, onnx_forward, rand
from tests.support.onnx_cases import run_converted

data = mx.sym.var("data")


def detections(shape: tuple, *, classes: int = 3, levels: int = 0, seed: int = 0, width: int = 6,
               span: float = 8.0) -> np.ndarray:
    """Rows [class, score, xmin, ymin, xmax, ymax, extra...] of shape ``shape + (width,)``.

    ``levels`` > 0 rounds the scores to that many levels (many equal scores). Boxes overlap
    often (side 0.5..4 in a ``span``-wide field that starts at -2), some coordinates are negative.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, shape + (width,)).astype(np.float32)
    x[..., 0] = rng.integers(0, classes, shape)
    score = rng.uniform(0, 1, shape)
    x[..., 1] = np.round(score * levels) / levels if levels else score
    corner = rng.uniform(-2, span - 2, shape + (2,))
    x[..., 2:4] = corner
    x[..., 4:6] = corner + rng.uniform(0.5, 4, shape + (2,))
    return x


def nms(x: np.ndarray, **attrs) -> np.ndarray:
    """Check the exported box_nms against MXNet exactly; return MXNet's output."""
    sym = mx.sym.contrib.box_nms(data, **attrs)
    check_export(sym, {"data": x}, atol=0, rtol=0)
    return mxnet_forward(sym, {}, {"data": x})[0]


def mxnet_nms(x: np.ndarray, **attrs) -> np.ndarray:
    return mxnet_forward(mx.sym.contrib.box_nms(data, **attrs), {}, {"data": x})[0]


def kept(out: np.ndarray, score_index: int = 1) -> np.ndarray:
    return out[out[..., score_index] != -1]


# -- box_nms: ordering, classes, topk ----------------------------------------------------------

def test_box_nms_separated_scores_default_attributes():
    x = detections((2, 40))
    out = nms(x)
    assert 0 < len(kept(out)) < 80  # something suppressed, something kept


def test_box_nms_tied_scores_keep_input_order():
    x = detections((2, 60), levels=4)
    out = nms(x, id_index=0)
    scores = kept(out)[:, 1]
    assert len(scores) - len(np.unique(scores)) > 10  # many kept rows share a score


def test_box_nms_all_scores_equal():
    x = detections((1, 50))
    x[..., 1] = 0.5
    nms(x, overlap_thresh=0.3, id_index=0)


@pytest.mark.parametrize("force_suppress", [False, True])
def test_box_nms_per_class_or_forced(force_suppress):
    x = detections((2, 50), levels=8, seed=1)
    out = nms(x, id_index=0, force_suppress=force_suppress, overlap_thresh=0.4)
    other = mxnet_nms(x, id_index=0, force_suppress=not force_suppress, overlap_thresh=0.4)
    assert len(kept(out)) != len(kept(other))  # the classes matter on this data


def test_box_nms_class_blind_without_id_index():
    x = detections((2, 50), seed=2)
    out = nms(x, id_index=-1, force_suppress=False)
    assert len(kept(out)) < len(kept(mxnet_nms(x, id_index=0)))


def test_box_nms_fractional_class_ids_compare_as_int():
    x = detections((2, 40), classes=2, seed=3)
    x[..., 0] += np.random.default_rng(3).uniform(-0.9, 0.9, (2, 40)).astype(np.float32)
    nms(x, id_index=0)


def test_box_nms_background_id_is_dropped():
    x = detections((2, 40), classes=3, seed=4)
    out = nms(x, id_index=0, background_id=1)
    assert 1 not in kept(out)[:, 0]
    assert (x[..., 0] == 1).any()


def test_box_nms_default_background_drops_class_minus_one():
    x = detections((1, 30), seed=5)
    x[0, :10, 0] = -1  # padding rows of an upstream op
    out = nms(x, id_index=0)
    assert -1 not in kept(out)[:, 0]


@pytest.mark.parametrize("topk", [1, 7, 25])
def test_box_nms_topk_applies_before_suppression(topk):
    x = detections((2, 40), levels=10, seed=6, span=2.0)
    out = nms(x, topk=topk, id_index=0)
    assert (out[:, topk:] == -1).all()
    if topk > 1:  # not the first rows of NMS over all boxes (the stock translation's reading of topk)
        assert not np.array_equal(out[:, :topk], mxnet_nms(x, id_index=0)[:, :topk])


def test_box_nms_topk_larger_than_boxes():
    nms(detections((2, 20), seed=7), topk=500, id_index=0)


def test_box_nms_topk_zero_returns_input():
    x = detections((2, 10), seed=8)
    out = nms(x, topk=0, out_format="center")
    np.testing.assert_array_equal(out, x)


def test_box_nms_topk_smaller_than_valid_count():
    x = detections((1, 40), seed=9)
    out = nms(x, topk=10, valid_thresh=0.2)
    assert (x[..., 1] > 0.2).sum() > 10 and len(kept(out)) <= 10


# -- box_nms: validity ---------------------------------------------------------------------------

@pytest.mark.parametrize("valid_thresh", [0.3, -0.5])
def test_box_nms_valid_thresh(valid_thresh):
    x = detections((2, 40), seed=10)
    x[..., 1] = x[..., 1] * 2 - 1  # scores in [-1, 1]
    out = nms(x, valid_thresh=valid_thresh, overlap_thresh=0.3)
    assert (kept(out)[:, 1] > valid_thresh).all()


def test_box_nms_all_invalid_input():
    x = detections((2, 20), seed=11)
    x[..., 1] = -0.5
    out = nms(x)
    assert (out == -1).all()


def test_box_nms_one_batch_entry_all_invalid():
    x = detections((3, 20), seed=12)
    x[1, :, 1] = 0.0  # not > valid_thresh=0
    out = nms(x, id_index=0)
    assert (out[1] == -1).all() and (out[0, 0] != -1).any()


def test_box_nms_nan_score_and_coordinate():
    x = detections((1, 30), seed=13)
    x[0, 3, 1] = np.nan
    x[0, 5, 2] = np.nan
    x[0, 8, 5] = np.nan
    nms(x)


# -- box_nms: geometry ---------------------------------------------------------------------------

def test_box_nms_negative_inverted_and_degenerate_boxes():
    x = detections((2, 40), seed=14, span=4.0)
    x[0, :5, 4:6] = x[0, :5, 2:4] - 1  # inverted: xmax < xmin
    x[0, 5:10, 4:6] = x[0, 5:10, 2:4]  # zero area
    x[1, :, 2:6] -= 10  # all negative
    x[1, 10] = x[1, 11]  # duplicate row
    nms(x, overlap_thresh=0.3)


def test_box_nms_integer_coordinates_hit_the_threshold_exactly():
    x = detections((2, 40), seed=15)
    x[..., 2:6] = np.round(x[..., 2:6])
    x[..., 4:6] = np.maximum(x[..., 4:6], x[..., 2:4] + 1)
    nms(x, overlap_thresh=0.5, force_suppress=True)


@pytest.mark.parametrize("overlap_thresh", [0.0, 1.0, 2.0])
def test_box_nms_threshold_extremes(overlap_thresh):
    out = nms(detections((2, 30), seed=16), overlap_thresh=overlap_thresh)
    if overlap_thresh >= 1:  # nothing suppressed: a sort
        assert len(kept(out)) == 60


@pytest.mark.parametrize("in_format, out_format", [("center", "corner"), ("corner", "center"), ("center", "center")])
def test_box_nms_formats(in_format, out_format):
    x = detections((2, 40), seed=17)
    if in_format == "center":
        x[..., 4:6] -= x[..., 2:4]  # width, height
    x[0, :4, 2] = -0.5  # negative first coordinate: MXNet does not re-encode such rows
    nms(x, in_format=in_format, out_format=out_format, id_index=0, overlap_thresh=0.3)


def test_box_nms_custom_layout_with_extra_columns():
    """RPN-style rows: score first, coordinates from 1, class id after them, two extra columns."""
    x = detections((2, 30), width=8, seed=18)[..., [1, 2, 3, 4, 5, 0, 6, 7]]
    nms(x, coord_start=1, score_index=0, id_index=5, overlap_thresh=0.4)


# -- box_nms: shapes and dtypes ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(30,), (3, 30), (2, 2, 30)])
def test_box_nms_leading_dims_are_the_batch(shape):
    nms(detections(shape, levels=6, seed=19), id_index=0, topk=12)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_box_nms_other_float_types(dtype):
    nms(detections((2, 30), levels=5, seed=20).astype(dtype), id_index=0, in_format="center")


def test_box_nms_dynamic_batch():
    from x2onnx.mxnet import export

    sym = mx.sym.contrib.box_nms(data, id_index=0, topk=20)
    model = export(sym, {}, {"data": (2, 40, 6)}, dynamic_batch=True, simplify=False, verify=False)
    x = detections((5, 40), levels=5, seed=21)
    np.testing.assert_array_equal(onnx_forward(model, {"data": x})[0], mxnet_nms(x, id_index=0, topk=20))


@pytest.mark.parametrize("attrs", [dict(id_index=0, topk=30), dict(in_format="center", valid_thresh=0.2)])
def test_box_nms_through_pytorch_is_exact(attrs):
    """MXNet -> ONNX -> onnx2x PyTorch: the same rows, bit for bit."""
    x = detections((2, 50), levels=6, seed=22)
    model = export_to_onnx(mx.sym.contrib.box_nms(data, **attrs), {}, {"data": x})
    _, got = run_converted(model, {"data": x})
    np.testing.assert_array_equal(got[0], mxnet_nms(x, **attrs))


# -- MultiBoxDetection ----------------------------------------------------------------------------

def multibox_inputs(batch: int = 2, classes: int = 4, anchors: int = 60, levels: int = 0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cls = rng.uniform(0, 1, (batch, classes, anchors)).astype(np.float32)
    if levels:
        cls = np.round(cls * levels) / levels
    cls /= cls.sum(1, keepdims=True)
    low = rng.uniform(-0.1, 0.7, (1, anchors, 2))
    return {"cls": cls, "loc": rng.uniform(-1, 1, (batch, anchors * 4)).astype(np.float32),
            "anchor": np.concatenate([low, low + rng.uniform(0.1, 0.5, (1, anchors, 2))], -1).astype(np.float32)}


def multibox(ins: dict, **attrs) -> np.ndarray:
    """Check against MXNet; the decoded boxes may differ by an ulp (MXNet's expf against ONNX Exp
    in double), so within 1e-6, which any wrong class id or suppression exceeds."""
    sym = mx.sym.contrib.MultiBoxDetection(mx.sym.var("cls"), mx.sym.var("loc"), mx.sym.var("anchor"), **attrs)
    check_export(sym, ins, atol=1e-6, rtol=1e-6)
    return mxnet_forward(sym, {}, ins)[0]


@pytest.mark.parametrize("attrs, levels", [
    (dict(), 0), (dict(nms_topk=10), 0), (dict(force_suppress=True, nms_threshold=0.3), 0), (dict(nms_topk=20), 4),
    (dict(clip=False, threshold=0.2, variances=(0.2, 0.1, 0.3, 0.25)), 0), (dict(nms_threshold=0), 0),
    (dict(nms_threshold=1.0), 4)])
def test_multibox_detection(attrs, levels):
    out = multibox(multibox_inputs(levels=levels), **attrs)
    suppressed = (out[..., 0] == -1) & (out[..., 1] != -1)
    if 0 < attrs.get("nms_threshold", 0.5) < 1:
        assert suppressed.any()  # rows suppressed by NMS (or past nms_topk) stay in place with id -1


def test_multibox_detection_edge_inputs():
    ins = multibox_inputs(seed=1)
    ins["cls"][0, 2, 5] = np.nan
    ins["cls"][1, 1:] = 0.001  # batch entry 1: nothing above the threshold
    out = multibox(ins, nms_topk=15)
    assert (out[1] == -1).all()
    multibox({**ins, "cls": ins["cls"][:, :1]})  # background only


def test_multibox_detection_through_pytorch():
    ins = multibox_inputs(levels=5, seed=2)
    sym = mx.sym.contrib.MultiBoxDetection(mx.sym.var("cls"), mx.sym.var("loc"), mx.sym.var("anchor"), nms_topk=20)
    model = export_to_onnx(sym, {}, ins)
    _, got = run_converted(model, {i.name: ins[i.name] for i in model.graph.input})
    np.testing.assert_allclose(got[0], mxnet_forward(sym, {}, ins)[0], atol=1e-6, rtol=1e-6)


# -- box_iou, box_encode, bipartite_matching, ROIAlign -------------------------------------------

def corner_boxes(shape: tuple, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.uniform(-2, 6, shape + (2,))
    return np.concatenate([low, low + rng.uniform(0.5, 5, shape + (2,))], -1).astype(np.float32)


@pytest.mark.parametrize("attrs", [dict(std0=0.1, std1=0.1, std2=0.2, std3=0.2, clip=4.42, format="corner"),
                                   dict(), dict(format="corner", clip=0.3)])
def test_box_decode_bit_exact(attrs):
    """Many boxes at image scale: the stock translation's order moved ~2% of them by an ulp."""
    rng = np.random.default_rng(29)
    anchors = corner_boxes((1, 3000), seed=28) * 80
    deltas = rng.uniform(-3, 3, (2, 3000, 4)).astype(np.float32)
    sym = mx.sym.contrib.box_decode(data, mx.sym.var("anchors"), **attrs)
    check_export(sym, {"data": deltas, "anchors": anchors}, atol=0, rtol=0)


@pytest.mark.parametrize("box_format", ["corner", "center"])
def test_box_iou(box_format):
    lhs, rhs = corner_boxes((3, 2), seed=30), corner_boxes((5,), seed=31)
    lhs[0, 0, 2:] = lhs[0, 0, :2]  # zero area
    lhs[1, 0, 2:] = lhs[1, 0, :2] - 1  # inverted
    sym = mx.sym.contrib.box_iou(data, mx.sym.var("rhs"), format=box_format)
    check_export(sym, {"data": lhs, "rhs": rhs}, atol=0, rtol=0)


def test_box_encode():
    rng = np.random.default_rng(32)
    names = ("samples", "matches", "anchors", "refs", "means", "stds")
    sym = mx.sym.contrib.box_encode(*[mx.sym.var(n) for n in names])
    matches = rng.integers(-1, 3, (2, 8)).astype(np.float32)
    samples = np.where(matches < 0, -1, rng.choice([0, 1], (2, 8))).astype(np.float32)
    ins = {"samples": samples, "matches": matches, "anchors": corner_boxes((2, 8), 33), "refs": corner_boxes((2, 3), 34),
           "means": np.array([0.1, -0.1, 0.2, 0], np.float32), "stds": np.array([0.1, 0.1, 0.2, 0.2], np.float32)}
    check_export(sym, ins, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("attrs, levels", [
    (dict(threshold=0.2), 0), (dict(threshold=0.7, is_ascend=True), 0), (dict(threshold=0.1, topk=2), 0),
    (dict(threshold=0.1), 3), (dict(threshold=0.95), 0)])
def test_bipartite_matching(attrs, levels):
    x = np.random.default_rng(35).uniform(0, 1, (2, 6, 4)).astype(np.float32)
    if levels:
        x = np.round(x * levels) / levels  # ties
    check_export(mx.sym.contrib.bipartite_matching(data, **attrs), {"data": x}, atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 5, 7)])
def test_bipartite_matching_leading_dims(shape):
    x = np.random.default_rng(36).uniform(0, 1, shape).astype(np.float32)
    check_export(mx.sym.contrib.bipartite_matching(data, threshold=0.3), {"data": x}, atol=0, rtol=0)


ROIS = np.array([[0, 1.5, 2.2, 10.3, 12.9], [1, 0, 0, 15, 15], [0, -3, -2, 4, 5], [1, 3.3, 4.4, 3.6, 4.9],
                 [0.7, 2, 3, 9, 9], [1, 14.5, 14.2, 17, 19]], np.float32)  # batch 0.7 is 0, as MXNet's int


ROI_ALIGN_CASES = [
    dict(pooled_size=(4, 4), spatial_scale=1.0, sample_ratio=2),
    dict(pooled_size=(3, 5), spatial_scale=0.5),  # sample_ratio -1: adaptive
    dict(pooled_size=(2, 3), spatial_scale=0.7, sample_ratio=2, position_sensitive=True)]
ALIGNED = dict(pooled_size=(4, 4), spatial_scale=1.0, sample_ratio=2, aligned=True)  # needs opset 16


@pytest.mark.parametrize("opset, attrs", [(13, a) for a in ROI_ALIGN_CASES] + [(16, a) for a in ROI_ALIGN_CASES]
                         + [(16, ALIGNED), (19, ALIGNED)])
def test_roi_align(opset, attrs):
    channels = 12 if attrs.get("position_sensitive") else 3
    sym = mx.sym.contrib.ROIAlign(data, mx.sym.var("rois"), **attrs)
    check_export(sym, {"data": rand(2, channels, 16, 16), "rois": ROIS}, atol=1e-5, rtol=1e-5, opset=opset)


def test_roi_align_negative_batch_index_gives_zeros():
    """MXNet documents such rois as ignored, but its CPU kernel leaves their output uninitialised
    and, with them in the batch, corrupts other rois at random (MXNet 1.9.1). The translation
    gives zeros there; the other rois must match MXNet run on each of them alone."""
    rois = np.concatenate([ROIS[:2], [[-1, 2, 2, 8, 8]], ROIS[2:3]]).astype(np.float32)
    x = rand(2, 3, 16, 16)
    sym = mx.sym.contrib.ROIAlign(data, mx.sym.var("rois"), pooled_size=(3, 3), spatial_scale=1.0, sample_ratio=2)
    model = export_to_onnx(sym, {}, {"data": x, "rois": rois})
    got = onnx_forward(model, {"data": x, "rois": rois})[0]
    assert (got[2] == 0).all()
    valid = [0, 1, 3]
    expected = np.concatenate([mxnet_forward(sym, {}, {"data": x, "rois": rois[i:i + 1]})[0] for i in valid])
    np.testing.assert_allclose(got[valid], expected, atol=1e-5, rtol=1e-5)


def test_roi_align_aligned_below_opset_16_is_refused():
    sym = mx.sym.contrib.ROIAlign(data, mx.sym.var("rois"), pooled_size=(2, 2), spatial_scale=1.0, aligned=True,
                                  name="roi")
    with pytest.raises(UnsupportedOpError, match=r"^roi \(_contrib_ROIAlign\): .*use --opset 16 or higher"):
        export_to_onnx(sym, {}, {"data": rand(1, 2, 8, 8), "rois": ROIS[:1]}, opset=13)


@pytest.mark.parametrize("op", ["box_decode", "box_iou", "bipartite_matching", "roi_align"])
def test_box_ops_through_pytorch(op):
    """MXNet -> ONNX -> onnx2x PyTorch against MXNet."""
    if op == "box_decode":
        sym = mx.sym.contrib.box_decode(data, mx.sym.var("anchors"), std0=0.1, std1=0.1, std2=0.2, std3=0.2, clip=4.42,
                                        format="corner")
        ins = {"data": rand(2, 50, 4, low=-3, high=3), "anchors": corner_boxes((1, 50), seed=40) * 80}
    elif op == "box_iou":
        sym, ins = mx.sym.contrib.box_iou(data, mx.sym.var("rhs")), {"data": corner_boxes((4,), 37),
                                                                     "rhs": corner_boxes((6,), 38)}
    elif op == "bipartite_matching":
        sym = mx.sym.contrib.bipartite_matching(data, threshold=0.2, topk=3)
        ins = {"data": np.random.default_rng(39).uniform(0, 1, (2, 6, 4)).astype(np.float32)}
    else:
        sym = mx.sym.contrib.ROIAlign(data, mx.sym.var("rois"), pooled_size=(2, 3), spatial_scale=0.7, sample_ratio=2,
                                      position_sensitive=True)
        ins = {"data": rand(2, 12, 16, 16), "rois": ROIS}
    model = export_to_onnx(sym, {}, ins)
    _, got = run_converted(model, {i.name: ins[i.name] for i in model.graph.input})
    for g, want in zip(got, mxnet_forward(sym, {}, ins)):
        np.testing.assert_allclose(g, want, atol=1e-5, rtol=1e-5)


# -- deformable convolutions ---------------------------------------------------------------------

offset = mx.sym.var("offset")
mask = mx.sym.var("mask")
DCN_TOL = dict(atol=1e-5, rtol=1e-5, opset=19)


def border_offsets(batch: int, channels: int, out_h: int, out_w: int, seed: int) -> np.ndarray:
    """Offsets of up to +-3 pixels, a third of them landing in the last pixel row/column or in
    (-1, 0), the two places where MXNet's DCNv1 and DCNv2 (= ONNX DeformConv) sample differently."""
    rng = np.random.default_rng(seed)
    off = rng.uniform(-3, 3, (batch, channels, out_h, out_w)).astype(np.float32)
    frac = rng.uniform(0.05, 0.95, off.shape).astype(np.float32)
    off[:, :, ::3] = np.where(rng.random(off[:, :, ::3].shape) < 0.5, -frac[:, :, ::3], frac[:, :, ::3] + 2)
    return off


def dcn_inputs(batch, cin, h, w, taps, groups, out_h, out_w, modulated: bool, seed: int = 0) -> dict:
    ins = {"data": rand(batch, cin, h, w, seed=seed + 1),
           "offset": border_offsets(batch, 2 * groups * taps, out_h, out_w, seed)}
    if modulated:
        ins["mask"] = rand(batch, groups * taps, out_h, out_w, low=0, high=1, seed=seed + 2)
    return ins


def test_dcn_v1_border_taps_differ_from_dcn_v2():
    """The data of these tests reaches the taps where DCNv1's border rule matters."""
    ins = dcn_inputs(1, 2, 6, 6, 9, 1, 6, 6, modulated=False)
    weight = rand(3, 2, 3, 3, seed=5)
    v1 = mx.sym.contrib.DeformableConvolution(data, offset, kernel=(3, 3), pad=(1, 1), num_filter=3, no_bias=True,
                                              name="dcn")
    v2 = mx.sym.contrib.ModulatedDeformableConvolution(data, offset, mask, kernel=(3, 3), pad=(1, 1), num_filter=3,
                                                       no_bias=True, name="dcn")
    ones = np.ones((1, 9, 6, 6), np.float32)
    out1 = mxnet_forward(v1, {"dcn_weight": weight}, ins)[0]
    out2 = mxnet_forward(v2, {"dcn_weight": weight}, {**ins, "mask": ones})[0]
    assert np.abs(out1 - out2).max() > 1e-2


@pytest.mark.parametrize("kwargs, shape", [
    (dict(kernel=(3, 3), pad=(1, 1), num_filter=4), (2, 4, 7, 7, 7, 7)),
    (dict(kernel=(3, 3), pad=(2, 1), stride=(2, 1), dilate=(2, 1), num_filter=6, num_group=2,
          num_deformable_group=2, no_bias=True), (1, 4, 8, 9, 4, 9)),
    (dict(kernel=(2, 3), stride=(1, 2), num_filter=4, num_deformable_group=4), (1, 4, 6, 8, 5, 3)),
])
def test_dcn_v1(kwargs, shape):
    batch, cin, h, w, out_h, out_w = shape
    taps = kwargs["kernel"][0] * kwargs["kernel"][1]
    sym = mx.sym.contrib.DeformableConvolution(data, offset, name="dcn", **kwargs)
    ins = dcn_inputs(batch, cin, h, w, taps, kwargs.get("num_deformable_group", 1), out_h, out_w, modulated=False)
    model = check_export(sym, ins, **DCN_TOL)
    assert "DeformConv" in [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("kwargs, shape", [
    (dict(kernel=(3, 3), pad=(1, 1), num_filter=4), (2, 4, 7, 7, 7, 7)),
    (dict(kernel=(3, 2), pad=(1, 0), stride=(1, 2), num_filter=8, num_group=2, num_deformable_group=4,
          no_bias=True), (1, 4, 6, 8, 6, 4)),
    (dict(kernel=(3, 3), pad=(2, 2), dilate=(2, 2), num_filter=2, num_group=2), (1, 4, 5, 5, 5, 5)),
])
def test_dcn_v2(kwargs, shape):
    batch, cin, h, w, out_h, out_w = shape
    taps = kwargs["kernel"][0] * kwargs["kernel"][1]
    sym = mx.sym.contrib.ModulatedDeformableConvolution(data, offset, mask, name="dcn", **kwargs)
    ins = dcn_inputs(batch, cin, h, w, taps, kwargs.get("num_deformable_group", 1), out_h, out_w, modulated=True)
    check_export(sym, ins, **DCN_TOL)


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
def test_dcn_through_pytorch(modulated, grouped):
    """MXNet -> ONNX DeformConv -> onnx2x PyTorch (plain torch, no torchvision) against MXNet."""
    kwargs = dict(kernel=(3, 3), pad=(1, 1), num_filter=4)
    shape = (2, 4, 7, 7, 7, 7)
    if grouped:
        kwargs.update(stride=(2, 1), dilate=(1, 2), pad=(1, 2), num_group=2, num_deformable_group=2)
        shape = (2, 4, 7, 7, 4, 7)
    batch, cin, h, w, out_h, out_w = shape
    groups = kwargs.get("num_deformable_group", 1)
    ins = dcn_inputs(batch, cin, h, w, 9, groups, out_h, out_w, modulated=modulated, seed=3)
    if modulated:
        sym = mx.sym.contrib.ModulatedDeformableConvolution(data, offset, mask, name="dcn", **kwargs)
    else:
        sym = mx.sym.contrib.DeformableConvolution(data, offset, name="dcn", **kwargs)
    params = {"dcn_weight": rand(4, cin // kwargs.get("num_group", 1), 3, 3, seed=7), "dcn_bias": rand(4, seed=8)}
    model = export_to_onnx(sym, params, ins, opset=19)
    _, got = run_converted(model, dict(ins))
    np.testing.assert_allclose(got[0], mxnet_forward(sym, params, ins)[0], atol=1e-5, rtol=1e-5)


def test_dcn_below_opset_19_is_refused_naming_the_opset():
    sym = mx.sym.contrib.ModulatedDeformableConvolution(data, offset, mask, kernel=(3, 3), pad=(1, 1), num_filter=2,
                                                        name="dcn")
    ins = dcn_inputs(1, 2, 5, 5, 9, 1, 5, 5, modulated=True)
    params = {"dcn_weight": rand(2, 2, 3, 3), "dcn_bias": rand(2)}
    with pytest.raises(UnsupportedOpError) as info:
        export_to_onnx(sym, params, ins, opset=17)
    text = str(info.value)
    assert text.startswith("dcn (_contrib_ModulatedDeformableConvolution): ")
    assert "at opset 17" in text and "use --opset 19 or higher" in text


def test_dcn_refusal_through_the_cli_is_one_line(capfd, tmp_path):
    from x2onnx.cli import main

    sym = mx.sym.contrib.DeformableConvolution(data, offset, kernel=(3, 3), pad=(1, 1), num_filter=2, name="dcn")
    sym_path, params_path = tmp_path / "dcn-symbol.json", tmp_path / "dcn-0000.params"
    sym.save(str(sym_path))
    mx.nd.save(str(params_path), {"arg:dcn_weight": mx.nd.array(rand(2, 2, 3, 3)), "arg:dcn_bias": mx.nd.array(rand(2))})
    code = main(["mxnet", str(sym_path), str(params_path), "--input-shape", "data:1,2,5,5",
                 "--input-shape", "offset:1,18,5,5", "-o", str(tmp_path / "dcn.onnx")])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert code == 3
    assert lines == [f"error: {sym_path}: dcn (_contrib_DeformableConvolution): unsupported op "
                     "_contrib_DeformableConvolution at opset 13 (converters exist from opset 19): ONNX has "
                     "DeformConv from opset 19; use --opset 19 or higher"]
    assert not (tmp_path / "dcn.onnx").exists()


@pytest.mark.parametrize("opset", [12, 18])
@pytest.mark.parametrize("op", ["box_nms", "bipartite_matching", "MultiBoxDetection"])
def test_loop_translations_at_other_opsets(op, opset):
    """Unsqueeze/ReduceMax change form at opsets 13 and 18, inside the Loop bodies too."""
    if op == "box_nms":
        sym, ins = mx.sym.contrib.box_nms(data, id_index=0, topk=20, out_format="center"), {"data": detections((2, 30))}
    elif op == "bipartite_matching":
        sym = mx.sym.contrib.bipartite_matching(data, threshold=0.2, topk=3)
        ins = {"data": np.random.default_rng(41).uniform(0, 1, (2, 5, 4)).astype(np.float32)}
    else:
        sym = mx.sym.contrib.MultiBoxDetection(mx.sym.var("cls"), mx.sym.var("loc"), mx.sym.var("anchor"), nms_topk=20)
        ins = multibox_inputs()
    check_export(sym, ins, atol=1e-6, rtol=1e-6, opset=opset)
