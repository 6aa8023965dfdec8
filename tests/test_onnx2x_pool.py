"""MaxPool's and AveragePool's layout choice, MaxPool's end pads and integer inputs, against
onnxruntime (max pooling is exact).

2-D pooling of an NCHW input with 8 or more channels runs on channels-last data (torch's
vectorized kernels, 3-10x faster on one thread); end pads beyond the begin pads (TensorFlow's
SAME, Caffe's rounding up) become ``ceil_mode`` where that gives the same windows, instead of a
padded copy of the input; 8-bit inputs (QOperator graphs' MaxPool on quantized codes) pool as
float32, which holds them exactly, also with asymmetric padding.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper

from onnx2x.torch import convert


def _max_pool_model(elem: int, shape: list, op: str = "MaxPool", indices: bool = False, **attrs):
    outputs = ["y", "i"] if indices else ["y"]
    node = helper.make_node(op, ["x"], outputs, **attrs)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, None)]
                              + ([helper.make_tensor_value_info("i", TP.INT64, None)] if indices else []))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _ort(model, x: np.ndarray, output: int = 0) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[output]


@pytest.mark.parametrize("channels,channels_last", [(16, True), (3, False)])
def test_max_pool_runs_channels_last_from_eight_channels(channels: int, channels_last: bool) -> None:
    model = _max_pool_model(TP.FLOAT, [2, channels, 15, 15], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                            ceil_mode=1)
    gm = convert(model)
    assert ("channels_last" in gm.code) == channels_last
    x = np.random.default_rng(0).standard_normal((2, channels, 15, 15)).astype(np.float32)
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    np.testing.assert_array_equal(got.numpy(), _ort(model, x))


@pytest.mark.parametrize("elem,dtype", [(TP.UINT8, np.uint8), (TP.INT8, np.int8)])
def test_max_pool_of_8_bit_codes_is_exact_with_asymmetric_pads(elem: int, dtype) -> None:
    model = _max_pool_model(elem, [1, 12, 11, 11], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0])
    info = np.iinfo(dtype)
    x = np.random.default_rng(1).integers(info.min, info.max + 1, (1, 12, 11, 11)).astype(dtype)
    x[0, 0] = info.min  # a plane at the bottom of the range: padding must never win
    with torch.no_grad():
        got = convert(model)(torch.from_numpy(x))
    assert got.dtype == torch.from_numpy(x).dtype and got.is_contiguous()
    np.testing.assert_array_equal(got.numpy(), _ort(model, x))


# (input size, kernel, stride, begin pad, end pad, ceil_mode): end pad = begin pad + stride - 1
# gives the same windows for every size; other end pads only for the size they were resolved for.
END_PAD_CASES = [(112, 3, 2, 0, 1, 0), (113, 3, 2, 0, 1, 0), (15, 3, 2, 1, 2, 0), (16, 3, 3, 0, 2, 0),
                 (17, 2, 2, 0, 1, 0), (9, 3, 2, 0, 2, 0), (10, 3, 2, 0, 2, 1), (11, 5, 2, 1, 3, 1)]


@pytest.mark.parametrize("n,k,s,b,e,ceil", END_PAD_CASES)
def test_max_pool_end_pads_become_ceil_mode_without_a_padded_copy(n: int, k: int, s: int, b: int, e: int,
                                                                   ceil: int) -> None:
    model = _max_pool_model(TP.FLOAT, [1, 16, n, n], kernel_shape=[k, k], strides=[s, s], pads=[b, b, e, e],
                            ceil_mode=ceil)
    gm = convert(model)
    calls = [node for node in gm.graph.nodes if node.op == "call_function"]
    uses_ceil_mode = [c.target for c in calls] == [torch.nn.functional.max_pool2d] and calls[0].args[5] is True
    x = np.random.default_rng(n).standard_normal((1, 16, n, n)).astype(np.float32)
    want = _ort(model, x)
    torch_size = -(-(n + 2 * b - k) // s) + 1  # PyTorch's ceil mode, whose last window starts in the input
    torch_size -= (torch_size - 1) * s >= n + b
    assert uses_ceil_mode == (want.shape[-1] == torch_size), gm.code
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    np.testing.assert_array_equal(got.numpy(), want)


def test_max_pool_end_pads_are_ceil_mode_for_every_size_of_a_symbolic_input() -> None:
    """pads [0, 0, 1, 1] with stride 2 on an image whose size is known only at run time: no pad
    node, and each size pools as onnxruntime does (1-D and 3-D alike)."""
    for rank in (1, 2, 3):
        model = _max_pool_model(TP.FLOAT, ["n", 8] + [f"d{i}" for i in range(rank)], kernel_shape=[3] * rank,
                                strides=[2] * rank, pads=[0] * rank + [1] * rank)
        gm = convert(model)
        assert "pad" not in gm.code and "ceil" not in gm.code.split("max_pool")[0], gm.code
        for size in (6, 7, 12):
            x = np.random.default_rng(size).standard_normal((1, 8) + (size,) * rank).astype(np.float32)
            with torch.no_grad():
                np.testing.assert_array_equal(gm(torch.from_numpy(x)).numpy(), _ort(model, x))


def test_max_pool_end_pads_as_ceil_mode_keep_onnx_indices() -> None:
    model = _max_pool_model(TP.FLOAT, [2, 3, 11, 12], indices=True, kernel_shape=[3, 3], strides=[2, 2],
                            pads=[0, 0, 1, 1])
    x = np.random.default_rng(3).standard_normal((2, 3, 11, 12)).astype(np.float32)
    with torch.no_grad():
        values, indices = convert(model)(torch.from_numpy(x))
    np.testing.assert_array_equal(values.numpy(), _ort(model, x))
    np.testing.assert_array_equal(indices.numpy(), _ort(model, x, output=1))


@pytest.mark.parametrize("channels,channels_last", [(16, True), (3, False)])
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool_runs_channels_last_from_eight_channels(channels: int, channels_last: bool,
                                                             include_pad: int) -> None:
    model = _max_pool_model(TP.FLOAT, [2, channels, 14, 14], op="AveragePool", kernel_shape=[3, 3], strides=[1, 1],
                            pads=[1, 1, 1, 1], count_include_pad=include_pad)
    gm = convert(model)
    assert ("channels_last" in gm.code) == channels_last
    x = np.random.default_rng(0).standard_normal((2, channels, 14, 14)).astype(np.float32)
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), _ort(model, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (3, 1), (5, 3)])
def test_max_pool_same_padding_of_a_symbolic_image_matches_onnxruntime(kernel: int, stride: int) -> None:
    """SAME_UPPER padding resolved at run time (the image size is symbolic): end pads that
    PyTorch's ceil mode covers pool without a padded copy, the others with one; all as
    onnxruntime does, on odd and even sizes."""
    model = _max_pool_model(TP.FLOAT, ["n", 16, "h", "w"], kernel_shape=[kernel, kernel], strides=[stride, stride],
                            auto_pad="SAME_UPPER")
    gm = convert(model)
    assert "onnx2x_torch_runtime_pool_max_pool" in gm.code
    for h, w in ((7, 8), (12, 12), (13, 5)):
        x = np.random.default_rng(h * w).standard_normal((2, 16, h, w)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_array_equal(gm(torch.from_numpy(x)).numpy(), _ort(model, x))


@pytest.mark.parametrize("n,k,s,b,e,ceil,covered", [(112, 3, 2, 0, 1, False, True), (9, 3, 2, 0, 2, False, False),
                                                    (10, 3, 2, 0, 2, True, True), (8, 3, 1, 2, 2, False, False),
                                                    (8, 3, 1, 1, 0, False, False), (7, 2, 2, 0, 1, False, True)])
def test_ceil_mode_covers_exactly_the_pads_whose_windows_agree(n: int, k: int, s: int, b: int, e: int, ceil: bool,
                                                                covered: bool) -> None:
    """Against onnxruntime: max pooling a ramp with PyTorch's ceil mode and the begin pads gives
    onnxruntime's result exactly where ceil_mode_covers says so."""
    from onnx2x.torch.runtime.pool import ceil_mode_covers

    assert ceil_mode_covers(n, k, s, 1, b, e, ceil) == covered
    model = _max_pool_model(TP.FLOAT, [1, 1, n], kernel_shape=[k], strides=[s], pads=[b, e], ceil_mode=int(ceil))
    x = np.arange(n, dtype=np.float32).reshape(1, 1, n)
    want = _ort(model, x)
    if b <= k // 2:
        got = torch.nn.functional.max_pool1d(torch.from_numpy(x), k, s, b, 1, True).numpy()
        assert (got.shape == want.shape and np.array_equal(got, want)) == covered
