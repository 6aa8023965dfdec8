"""MXNet -> ONNX shape translations (mx2onnx_patches/ops_shape.py) against MXNet's own forward."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.mxnet_ops import check_export, mx, mxnet_forward, onnx_forward, rand
from x2onnx.mxnet import export

data = mx.sym.var("data")


@pytest.mark.parametrize("shape, reverse", [
    ((0, -1), False),
    ((-2,), False),
    ((0, -2), False),
    ((-2, 1, 1), False),
    ((-3, -2), False),
    ((0, -3, 0), False),
    ((-3, -3), False),
    ((-4, 1, -1, -2), False),
    ((0, 0, -4, 2, -1, 0), False),
    ((0, -4, -1, 3, -2), False),
    ((-4, 2, 1, -3, 0), False),
    ((6, 1, -1), False),
    ((0, 0, -1), True),
    ((-1, 0), True),
    ((-1, -3), True),
    ((-2, -3), True),
    ((-1, 5), True),
])
def test_reshape_special_codes(shape, reverse):
    sym = mx.sym.Reshape(data, shape=shape, reverse=reverse, name="y")
    check_export(sym, {"data": rand(2, 3, 4, 5)})


def test_reshape_codes_keep_dynamic_batch():
    """The target shape is built from the runtime shape, not frozen at the export shape."""
    sym = mx.sym.Reshape(data, shape=(0, -3, -2), name="y")
    model = export(sym, {}, {"data": (2, 3, 4, 5)}, dynamic_batch=True, simplify=False, verify=False)
    x = rand(5, 3, 4, 5)
    got = onnx_forward(model, {"data": x})[0]
    expected = mxnet_forward(sym, {}, {"data": x})[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("begin, end, step", [
    ((None,), (None,), (-1,)),
    ((None, 3), (None, 0), (1, -1)),
    ((2, None), (0, None), (-1, -2)),
    ((-1, -1, None), (None, -4, None), (-1, -1, -2)),
    ((1, None, 4), (2, None, 0), (1, -1, -3)),
    ((0, 1), (2, 4), (None, 2)),
])
def test_slice_negative_step(begin, end, step):
    sym = mx.sym.slice(data, begin=begin, end=end, step=step, name="y")
    check_export(sym, {"data": rand(2, 4, 6)})


@pytest.mark.parametrize("axis", [1, (1,), (0, 2), (2, 0, 1)])  # MXNet itself refuses negative axes
def test_reverse_axis_int_or_tuple(axis):
    """GluonCV's Faster R-CNN (BBoxClipToImage) writes reverse(axis=(1,)); MXNet's translation took only an int."""
    sym = mx.sym.reverse(data, axis=axis, name="y")
    check_export(sym, {"data": rand(2, 3, 4)})


@pytest.mark.parametrize("in_shape, shape", [((2, 1, 4), (0, 3, 0)), ((1, 5, 4), (2, 0, 4)), ((2, 1, 1), (2, 3, 4))])
def test_broadcast_to_zero_keeps_dim(in_shape, shape):
    sym = mx.sym.broadcast_to(data, shape=shape, name="y")
    check_export(sym, {"data": rand(*in_shape)})
