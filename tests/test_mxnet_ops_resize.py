"""BilinearResize2D (mx2onnx_patches/ops_resize.py) against MXNet's own forward, for every mode.

Reference: MXNet 1.9.1's CPU kernel on the same seeded input. The translation samples at the
coordinates MXNet computes, so the outputs agree to float32 rounding (in practice bit for bit),
at up- and down-scaling, odd and even sizes, with and without ``align_corners``.
"""
from __future__ import annotations

import numpy as np
import pytest

from mx2onnx_patches.ops_resize import source_coordinates
from tests.support.mxnet_ops import check_export, export_to_onnx, mx, mxnet_forward, onnx_forward, rand

data = mx.sym.var("data")
TOL = {"atol": 1e-6, "rtol": 1e-6}


def _resize(x, name, **attrs):
    return mx.sym.contrib.BilinearResize2D(x, name=name, **attrs)


def _group(cases):
    return mx.sym.Group([_resize(data, f"r{k}", **attrs) for k, attrs in enumerate(cases)])


# one symbol per mode family: up and down, odd and even output sizes
MODES = {
    "size": [dict(height=11, width=4), dict(height=3, width=16), dict(height=8, width=6), dict(height=1, width=1)],
    "scale": [dict(scale_height=2.0, scale_width=0.5), dict(scale_height=0.4, scale_width=1.7)],
    "odd_scale": [dict(mode="odd_scale", scale_height=2.0, scale_width=0.5),
                  dict(mode="odd_scale", scale_height=0.5, scale_width=3.0)],
    "even_odd": [dict(mode=m) for m in ("to_even_down", "to_even_up", "to_odd_down", "to_odd_up")],
}


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("family", sorted(MODES))
@pytest.mark.parametrize("shape", [(1, 2, 7, 6), (2, 1, 6, 9)])
def test_every_mode_matches_mxnet(family, align, shape):
    sym = _group([dict(attrs, align_corners=align) for attrs in MODES[family]])
    check_export(sym, {"data": rand(*shape)}, **TOL)


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("like_shape", [(1, 1, 13, 4), (1, 1, 2, 10)])
def test_like_mode_takes_the_second_inputs_size(align, like_shape):
    like = mx.sym.var("like")
    sym = _resize(data, "resize", like=like, mode="like", align_corners=align)
    check_export(sym, {"data": rand(1, 2, 5, 6), "like": rand(*like_shape, seed=2)}, **TOL)


def test_icnet_downsampling_480_to_240_is_at_float32_rounding():
    """The ICNet case: 480 -> 240 with align_corners (the default), where ONNX Resize differed by 1e-4."""
    sym = _resize(data, "resize", height=240, width=240)
    inputs = {"data": rand(1, 3, 480, 480)}
    expected = mxnet_forward(sym, {}, inputs)[0]
    got = onnx_forward(export_to_onnx(sym, {}, inputs), inputs)[0]
    assert got.shape == expected.shape == (1, 3, 240, 240)
    assert float(np.abs(got - expected).max()) <= 1e-6 * float(np.abs(expected).max())


def test_float64_input_matches_mxnet():
    sym = _resize(data, "resize", height=5, width=9, align_corners=False)
    check_export(sym, {"data": rand(1, 2, 7, 4, dtype=np.float64)}, atol=1e-12, rtol=1e-12)


def test_coordinates_are_mxnets():
    """One axis by hand: 4 -> 3 with align_corners samples 0, 1.5, 3; without, MXNet's half-pixel
    mapping 4/3 * (d + 0.5) - 0.5 = 0.1667, 1.5, 2.8333."""
    i0, i1, l1 = source_coordinates(4, 3, True)
    assert i0.tolist() == [0, 1, 3] and i1.tolist() == [1, 2, 3] and l1.tolist() == [0.0, 0.5, 0.0]
    i0, i1, l1 = source_coordinates(4, 3, False)
    assert i0.tolist() == [0, 1, 2] and i1.tolist() == [1, 2, 3]
    np.testing.assert_allclose(l1, [1 / 6, 0.5, 5 / 6], rtol=1e-6)
