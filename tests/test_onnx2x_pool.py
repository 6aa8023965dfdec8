"""MaxPool's layout choice and integer inputs, against onnxruntime (max pooling is exact).

2-D max pooling of an NCHW input with 8 or more channels runs on channels-last data (torch's
vectorized kernel, 3-7x faster on one thread); 8-bit inputs (QOperator graphs' MaxPool on
quantized codes) pool as float32, which holds them exactly, also with asymmetric padding.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper

from onnx2x.torch import convert


def _max_pool_model(elem: int, shape: list[int], **attrs):
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _ort(model, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


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
