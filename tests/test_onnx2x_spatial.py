"""Spatial, quantization and signal converters against onnxruntime, on what conformance misses.

The ONNX node cases feed scales, pads and shapes as graph inputs and use tiny tensors; real models
carry them as initializers, where the converters take their static fast paths (plain
``F.conv2d``/``F.max_pool2d``/``F.interpolate`` calls). These cases build such models with
asymmetric and oversized pads, ceil mode, dilations, SAME padding on dynamic shapes, per-channel
quantization and the like, and compare every output with onnxruntime.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto as TP
from onnx import helper

from onnx2x.torch import convert
from tests.support.onnx_cases import check_converted, typed_model

RNG = np.random.default_rng(0)


def model_of(node: onnx.NodeProto, inputs, outputs, inits=(), opset: int = 19) -> onnx.ModelProto:
    return typed_model([node], inputs, outputs, initializers=inits, opset=opset)


def check(model: onnx.ModelProto, feeds: dict, rtol: float = 1e-4, atol: float = 1e-5):
    """Convert, run both, compare every output; returns the GraphModule."""
    return check_converted(model, feeds, rtol=rtol, atol=atol)


def targets(gm) -> set:
    return {n.target for n in gm.graph.nodes if n.op == "call_function"}


def x_of(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- Conv / ConvTranspose ------------------------------------------------------------------------
CONV_CASES = [
    dict(pads=[1, 1, 1, 1]),
    dict(pads=[0, 1, 2, 0], strides=[2, 1]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 3]),
    dict(auto_pad="VALID", group=2),
    dict(pads=[2, 2, 2, 2], dilations=[2, 2], group=4),
]


@pytest.mark.parametrize("attrs", CONV_CASES)
def test_conv_2d(attrs):
    group = attrs.get("group", 1)
    w = x_of(6 if group != 4 else 8, 4 // group, 3, 3)
    b = x_of(w.shape[0])
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    m = model_of(node, [("x", TP.FLOAT, [1, 4, 9, 11])], [("y", TP.FLOAT, None)], [("w", w), ("b", b)])
    gm = check(m, {"x": x_of(1, 4, 9, 11)})
    assert torch.conv2d in targets(gm)


def test_conv_same_on_dynamic_spatial_shape():
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])
    m = model_of(node, [("x", TP.FLOAT, [1, 2, "h", "w"])], [("y", TP.FLOAT, None)], [("w", x_of(3, 2, 4, 4))])
    gm = convert(m, simplify=False)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for h, w in ((7, 9), (8, 8)):
        x = x_of(1, 2, h, w)
        np.testing.assert_allclose(gm(torch.from_numpy(x)).numpy(), sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rank", [1, 3])
def test_conv_1d_3d_asymmetric(rank):
    spatial = [7] * rank
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * rank + [0] * rank, strides=[2] * rank)
    m = model_of(node, [("x", TP.FLOAT, [2, 3] + spatial)], [("y", TP.FLOAT, None)], [("w", x_of(*([4, 3] + [3] * rank)))])
    check(m, {"x": x_of(2, 3, *spatial)})


CONVT_CASES = [
    dict(strides=[2, 2]),
    dict(strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]),
    dict(strides=[3, 2], output_shape=[10, 8]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[2, 2], auto_pad="SAME_LOWER", dilations=[2, 1]),
    dict(strides=[1, 1], pads=[1, 1, 1, 1], group=2),
]


@pytest.mark.parametrize("attrs", CONVT_CASES)
def test_conv_transpose(attrs):
    group = attrs.get("group", 1)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    m = model_of(node, [("x", TP.FLOAT, [1, 4, 3, 3])], [("y", TP.FLOAT, None)],
                 [("w", x_of(4, 6 // group, 3, 3)), ("b", x_of(6))])
    gm = check(m, {"x": x_of(1, 4, 3, 3)})
    # a channels-last weight puts the transposed convolution on its channels-last kernel (128 -> 128,
    # 4x4/2 on 64x64: 27 ms against 55 ms) and keeps the activations channels-last after it
    (call,) = [n for n in gm.graph.nodes if n.target in (torch.conv_transpose2d, F.conv_transpose2d)]
    assert getattr(gm, call.args[1].target).is_contiguous(memory_format=torch.channels_last)


# --- pooling --------------------------------------------------------------------------------------
POOL_CASES = [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[2, 3], strides=[3, 2], pads=[0, 2, 1, 0], ceil_mode=1),
    dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2]),
]


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool(attrs, include_pad):
    node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=include_pad, **attrs)
    m = model_of(node, [("x", TP.FLOAT, [2, 3, 10, 9])], [("y", TP.FLOAT, None)])
    check(m, {"x": x_of(2, 3, 10, 9)})


@pytest.mark.parametrize("attrs", POOL_CASES + [dict(kernel_shape=[3, 2], dilations=[2, 2], pads=[1, 1, 1, 0])])
@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_with_indices(attrs, storage_order):
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], storage_order=storage_order, **attrs)
    m = model_of(node, [("x", TP.FLOAT, [2, 3, 10, 9])], [("y", TP.FLOAT, None), ("i", TP.INT64, None)])
    check(m, {"x": x_of(2, 3, 10, 9)})


def test_max_pool_fast_path_is_plain_torch():
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    m = model_of(node, [("x", TP.FLOAT, [1, 3, 10, 9])], [("y", TP.FLOAT, None)])
    gm = check(m, {"x": x_of(1, 3, 10, 9)})
    assert F.max_pool2d in targets(gm)


def test_max_pool_uint8():
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 0, 0, 1])
    m = model_of(node, [("x", TP.UINT8, [1, 2, 5, 5])], [("y", TP.UINT8, None)])
    check(m, {"x": RNG.integers(0, 255, (1, 2, 5, 5)).astype(np.uint8)})


def test_average_pool_dilated_opset19():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 0, 1, 1])
    m = model_of(node, [("x", TP.FLOAT, [1, 2, 8, 8])], [("y", TP.FLOAT, None)])
    check(m, {"x": x_of(1, 2, 8, 8)})


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    node = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 0, 1], p=p)
    m = model_of(node, [("x", TP.FLOAT, [1, 2, 7, 6])], [("y", TP.FLOAT, None)], opset=18)
    check(m, {"x": x_of(1, 2, 7, 6)})


# --- Resize ---------------------------------------------------------------------------------------
RESIZE_CASES = [
    dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    dict(mode="nearest"),
    dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"),
    dict(mode="nearest", coordinate_transformation_mode="align_corners", nearest_mode="ceil"),
    dict(mode="linear"),
    dict(mode="linear", coordinate_transformation_mode="align_corners"),
    dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    dict(mode="linear", coordinate_transformation_mode="asymmetric"),
    dict(mode="cubic"),
    dict(mode="cubic", coordinate_transformation_mode="align_corners"),
    dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1),
]


# align_corners with a fractional scale * length (8 * 1.7) is left out: onnxruntime divides by the
# floored output length, the ONNX reference and conformance data (followed here) by 13.6 - 1.
RESIZE_SCALES = [[1, 1, 2, 2], [1, 1, 0.5, 0.75], [1, 1, 1.7, 2.3]]
RESIZE_GRID = [(a, s) for a in RESIZE_CASES for s in RESIZE_SCALES
               if not (a.get("coordinate_transformation_mode") == "align_corners" and s[2] == 1.7)]


@pytest.mark.parametrize("attrs,scales", RESIZE_GRID)
def test_resize_constant_scales(attrs, scales):
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], **attrs)
    m = model_of(node, [("x", TP.FLOAT, [1, 3, 8, 12])], [("y", TP.FLOAT, None)],
                 [("s", np.array(scales, np.float32))])
    check(m, {"x": x_of(1, 3, 8, 12)})


@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 37 / 24, 53 / 24], [1, 1, 0.75, 1.25]],
                         ids=["double", "tf-sizes", "mixed"])
def test_resize_tf2onnx_nearest_and_float32_output_sizes(scales):
    """tf2onnx writes ``tf.image.resize(method="nearest")`` as Resize-13 with Resize-11's
    tf_half_pixel_for_nn (source (i + 0.5) / scale), and a resize to sizes as float32 scales whose
    product with the input length, 36.99999 in float64, is 37 in float32 (onnxruntime's size)."""
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", nearest_mode="floor",
                            coordinate_transformation_mode="tf_half_pixel_for_nn")
    m = model_of(node, [("x", TP.FLOAT, [1, 3, 24, 24])], [("y", TP.FLOAT, None)],
                 [("s", np.array(scales, np.float32))])
    gm = check(m, {"x": x_of(1, 3, 24, 24)})
    want = [int(np.floor(np.float32(f) * np.float32(24))) for f in scales[2:]]
    assert list(gm(torch.from_numpy(x_of(1, 3, 24, 24))).shape[2:]) == want


def test_resize_common_cases_use_interpolate():
    for attrs in (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                  dict(mode="linear"), dict(mode="linear", coordinate_transformation_mode="align_corners")):
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], **attrs)
        m = model_of(node, [("x", TP.FLOAT, [1, 3, 8, 12])], [("y", TP.FLOAT, None)],
                     [("s", np.array([1, 1, 2, 2], np.float32))])
        gm = check(m, {"x": x_of(1, 3, 8, 12)})
        assert F.interpolate in targets(gm), attrs


def test_resize_dynamic_batch_keeps_fast_path():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    m = model_of(node, [("x", TP.FLOAT, ["n", 3, 5, 7])], [("y", TP.FLOAT, None)],
                 [("s", np.array([1, 1, 2, 2], np.float32))])
    gm = check(m, {"x": x_of(3, 3, 5, 7)})
    assert F.interpolate in targets(gm)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_sizes_dynamic_shape(mode):
    node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode=mode)
    m = model_of(node, [("x", TP.FLOAT, ["n", 2, "h", "w"])], [("y", TP.FLOAT, None)],
                 [("sz", np.array([2, 2, 5, 13], np.int64))])
    check(m, {"x": x_of(2, 2, 7, 6)})


# (attributes, whether the tables of a 2x upsampling read index i // 2: half-pixel coordinates
# never tie, asymmetric ones tie at odd i, align_corners' (2n - 1)ths round down to i // 2)
NEAREST_MODES = [(dict(coordinate_transformation_mode="asymmetric", nearest_mode="floor"), True),
                 (dict(), True),
                 (dict(coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"), True),
                 (dict(coordinate_transformation_mode="align_corners"), True),
                 (dict(coordinate_transformation_mode="half_pixel", nearest_mode="floor"), False),
                 (dict(coordinate_transformation_mode="asymmetric", nearest_mode="ceil"), False)]


@pytest.mark.parametrize("attrs,halves", NEAREST_MODES, ids=["asymmetric-floor", "default", "half-pixel-ceil",
                                                             "align-corners", "half-pixel-floor", "asymmetric-ceil"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 2, 1], [1, 1, 3, 3]], ids=["2x2", "2x1", "3x3"])
def test_resize_nearest_on_dynamic_sizes_doubles_in_one_pass(attrs, halves, scales, monkeypatch):
    """With run-time image sizes, a nearest Resize whose tables read index i // 2 on every resized
    axis (exporters' 2x upsampling) runs as F.interpolate, channels-last in and out; any other
    rounding or factor gathers with its tables. Both match onnxruntime."""
    from onnx2x.torch.runtime import resize as rt_resize

    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", **attrs)
    m = model_of(node, [("x", TP.FLOAT, ["n", 3, "h", "w"])], [("y", TP.FLOAT, None)],
                 [("s", np.array(scales, np.float32))])
    doubled = []
    rt_resize._tables_for.cache_clear()  # tables are cached per shape: this call must build them
    check_tables = rt_resize._doubles_spatial_axes
    monkeypatch.setattr(rt_resize, "_doubles_spatial_axes", lambda *a: doubled.append(check_tables(*a)) or doubled[-1])
    gm = check(m, {"x": x_of(2, 3, 5, 7)})
    assert doubled == [halves and scales[2] == 2]
    if doubled[-1]:
        x = torch.from_numpy(x_of(1, 3, 6, 4)).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            assert gm(x).is_contiguous(memory_format=torch.channels_last)


def test_resize_linear_antialias_downsample():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", antialias=1)
    m = model_of(node, [("x", TP.FLOAT, [1, 2, 16, 12])], [("y", TP.FLOAT, None)],
                 [("s", np.array([1, 1, 0.4, 0.6], np.float32))])
    check(m, {"x": x_of(1, 2, 16, 12)})


def test_upsample_opset9_nearest():
    node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")
    m = model_of(node, [("x", TP.FLOAT, [1, 2, 3, 4])], [("y", TP.FLOAT, None)],
                 [("s", np.array([1, 1, 2, 3], np.float32))], opset=9)
    check(m, {"x": x_of(1, 2, 3, 4)})


# --- Pad, depth/space, GridSample -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 2, 1], [1, 0, 3, 0, 0, 1, 0, 4], [0, 0, -1, 2, 0, 0, 1, -2]])
def test_pad(mode, pads):
    node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
    m = model_of(node, [("x", TP.FLOAT, [2, 3, 4, 5])], [("y", TP.FLOAT, None)],
                 [("p", np.array(pads, np.int64)), ("v", np.array(1.5, np.float32))])
    check(m, {"x": x_of(2, 3, 4, 5)})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_roundtrip(mode):
    d2s = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)
    check(model_of(d2s, [("x", TP.FLOAT, [2, 8, 3, 4])], [("y", TP.FLOAT, None)]), {"x": x_of(2, 8, 3, 4)})
    s2d = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)
    check(model_of(s2d, [("x", TP.FLOAT, [2, 2, 6, 4])], [("y", TP.FLOAT, None)]), {"x": x_of(2, 2, 6, 4)})


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_grid_sample(mode, padding_mode):
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode=mode, padding_mode=padding_mode)
    m = model_of(node, [("x", TP.FLOAT, [1, 2, 5, 6]), ("g", TP.FLOAT, [1, 4, 3, 2])], [("y", TP.FLOAT, None)], opset=16)
    grid = (RNG.random((1, 4, 3, 2)) * 2.4 - 1.2).astype(np.float32)
    check(m, {"x": x_of(1, 2, 5, 6), "g": grid})


# --- NMS, quantization, signal --------------------------------------------------------------------
@pytest.mark.parametrize("center", [0, 1])
def test_non_max_suppression(center):
    boxes = RNG.random((2, 30, 4)).astype(np.float32)
    scores = RNG.random((2, 3, 30)).astype(np.float32)
    node = helper.make_node("NonMaxSuppression", ["b", "s", "m", "iou", "st"], ["y"], center_point_box=center)
    m = model_of(node, [("b", TP.FLOAT, [2, 30, 4]), ("s", TP.FLOAT, [2, 3, 30])], [("y", TP.INT64, None)],
                 [("m", np.array([5], np.int64)), ("iou", np.array([0.3], np.float32)),
                  ("st", np.array([0.2], np.float32))])
    check(m, {"b": boxes, "s": scores})


def test_quantize_dequantize_per_axis():
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    m = model_of(q, [("x", TP.FLOAT, [2, 3, 4])], [("y", TP.INT8, None)],
                 [("s", np.array([0.05, 0.1, 0.02], np.float32)), ("z", np.array([-3, 0, 5], np.int8))])
    check(m, {"x": (x_of(2, 3, 4) * 4).astype(np.float32)})
    d = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    m = model_of(d, [("x", TP.UINT8, [2, 3, 4])], [("y", TP.FLOAT, None)],
                 [("s", np.array([0.05, 0.1, 0.02], np.float32)), ("z", np.array([3, 0, 200], np.uint8))])
    check(m, {"x": RNG.integers(0, 255, (2, 3, 4)).astype(np.uint8)})


def test_qlinear_conv_per_channel():
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 1, 1, 1], strides=[2, 2])
    inits = [("xs", np.array(0.02, np.float32)), ("xz", np.array(120, np.uint8)),
             # 7-bit weights: onnxruntime's AVX2 uint8 x int8 kernel saturates pair sums at int16 beyond
             # that (full-range operands: test_onnx2x_quantized.py::test_qlinear_conv_full_range_is_exact)
             ("w", RNG.integers(-63, 64, (4, 3, 3, 3)).astype(np.int8)),
             ("ws", np.array([0.01, 0.02, 0.005, 0.03], np.float32)), ("wz", np.zeros(4, np.int8)),
             ("ys", np.array(0.2, np.float32)), ("yz", np.array(100, np.uint8)),
             ("b", RNG.integers(-500, 500, 4).astype(np.int32))]
    m = model_of(node, [("x", TP.UINT8, [1, 3, 9, 9])], [("y", TP.UINT8, None)], inits)
    check(m, {"x": RNG.integers(0, 255, (1, 3, 9, 9)).astype(np.uint8)})


@pytest.mark.parametrize("onesided", [0, 1])
def test_dft_real_input(onesided):
    node = helper.make_node("DFT", ["x"], ["y"], axis=1, onesided=onesided)
    m = model_of(node, [("x", TP.FLOAT, [2, 16, 1])], [("y", TP.FLOAT, None)], opset=17)
    check(m, {"x": x_of(2, 16, 1)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("opset,ratio", [(10, 0), (16, 2), (16, 0)])
def test_roi_align(mode, opset, ratio):
    node = helper.make_node("RoiAlign", ["x", "r", "b"], ["y"], mode=mode, output_height=3, output_width=4,
                            sampling_ratio=ratio, spatial_scale=0.5)
    corners = RNG.random((5, 2, 2)) * 18
    rois = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
    m = model_of(node, [("x", TP.FLOAT, [2, 3, 10, 9]), ("r", TP.FLOAT, [5, 4])], [("y", TP.FLOAT, None)],
                 [("b", np.array([0, 1, 1, 0, 1], np.int64))], opset=opset)
    check(m, {"x": x_of(2, 3, 10, 9), "r": rois})


def test_max_roi_pool():
    node = helper.make_node("MaxRoiPool", ["x", "r"], ["y"], pooled_shape=[2, 3], spatial_scale=0.5)
    corners = RNG.random((4, 2, 2)) * 16
    rois = np.concatenate([np.array([[0], [1], [1], [0]]), corners.min(1), corners.max(1)], 1).astype(np.float32)
    m = model_of(node, [("x", TP.FLOAT, [2, 3, 9, 10]), ("r", TP.FLOAT, [4, 5])], [("y", TP.FLOAT, None)])
    check(m, {"x": x_of(2, 3, 9, 10), "r": rois})


def test_max_unpool_roundtrip():
    pool = helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2])
    unpool = helper.make_node("MaxUnpool", ["p", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph([pool, unpool], "g", [helper.make_tensor_value_info("x", TP.FLOAT, [2, 3, 6, 8])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=9)
    check(m, {"x": x_of(2, 3, 6, 8)})


def test_upsample_with_scales_attribute_in_a_newer_opset_is_read_as_opset_7():
    """Old exporters write Upsample's scales as an attribute in opset-9 models; runtimes such as
    OpenCV read them, onnxruntime refuses the file: the module follows the attribute, checked
    against onnxruntime on the same node in the opset-7 form."""
    node = helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0], mode="nearest")
    x = x_of(1, 2, 3, 4)
    newer = model_of(node, [("x", TP.FLOAT, [1, 2, 3, 4])], [("y", TP.FLOAT, None)], opset=9)
    older = model_of(node, [("x", TP.FLOAT, [1, 2, 3, 4])], [("y", TP.FLOAT, None)], opset=7)
    expected = ort.InferenceSession(older.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = convert(newer, simplify=False)(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 2, 6, 12)
    np.testing.assert_array_equal(got, expected)


def test_resize_without_scales_or_sizes_is_refused_at_conversion():
    from common.errors import ConversionError

    node = helper.make_node("Resize", ["x"], ["y"], mode="nearest", name="up")
    model = model_of(node, [("x", TP.FLOAT, [1, 2, 3, 4])], [("y", TP.FLOAT, None)], opset=13)
    with pytest.raises(ConversionError, match="needs scales or sizes") as info:
        convert(model, simplify=False)
    assert (info.value.node, info.value.op_type) == ("up", "Resize")
