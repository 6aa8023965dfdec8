"""MXNet -> ONNX math translations (mx2onnx_patches/ops_math.py) against MXNet's own forward."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.mxnet_ops import check_export, mx, rand

data = mx.sym.var("data")
other = mx.sym.var("other")


def _halves_and_edges() -> np.ndarray:
    """Values where rounding conventions differ (halves), plus ordinary ones."""
    below_half = np.nextafter(np.float32(0.5), np.float32(0))  # 0.49999997: rounds to 0
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, below_half, -below_half], dtype=np.float32)
    return np.concatenate([halves, rand(8, low=-4, high=4)]).reshape(2, 8)


@pytest.mark.parametrize("op, values", [
    ("sign", _halves_and_edges()),
    ("round", _halves_and_edges()),
    ("trunc", _halves_and_edges()),
    ("erf", rand(3, 5, low=-2, high=2)),
    ("sinh", rand(3, 5, low=-3, high=3)),
    ("cosh", rand(3, 5, low=-3, high=3)),
    ("arcsinh", rand(3, 5, low=-5, high=5)),
    ("rsqrt", rand(3, 5, low=0.1, high=4)),
    ("log10", rand(3, 5, low=0.01, high=100)),
])
def test_unary(op, values):
    check_export(getattr(mx.sym, op)(data, name="y"), {"data": values}, rtol=1e-5, atol=1e-6)


def test_log1p_and_expm1_keep_precision_near_zero():
    """Tiny arguments: log(1 + x) and exp(x) - 1 written naively lose them entirely."""
    values = np.array([[1e-9, -3e-8, 2e-6, -5e-5, 1e-3, 0.0],
                       [0.3, -0.6, 2.0, 7.5, -9.0, 40.0]], dtype=np.float32)
    check_export(mx.sym.log1p(data, name="y"), {"data": np.abs(values)}, rtol=1e-5, atol=0)
    check_export(mx.sym.expm1(data, name="y"), {"data": values}, rtol=1e-5, atol=0)


def test_log1p_negative_arguments():
    values = np.array([[-0.9, -0.5, -1e-7, -0.99, 0.5, 1e-7]], dtype=np.float32)
    check_export(mx.sym.log1p(data, name="y"), {"data": values}, rtol=1e-5, atol=0)


def test_broadcast_hypot():
    check_export(mx.sym.broadcast_hypot(data, other, name="y"),
                 {"data": rand(2, 3, 4, low=-3, high=3), "other": rand(2, 1, 4, seed=2, low=-3, high=3)})


def test_broadcast_maximum():
    check_export(mx.sym.broadcast_maximum(data, other, name="y"),
                 {"data": rand(2, 3, 4), "other": rand(1, 3, 1, seed=2)})


# -- reductions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(axis=1, exclude=True),
    dict(axis=(0, 2), exclude=True),
    dict(axis=1, exclude=True, keepdims=True),
    dict(axis=-1),
    dict(),
    dict(axis=(0, 1, 2)),
    dict(keepdims=True),
])
def test_sum(kwargs):
    check_export(mx.sym.sum(data, name="y", **kwargs), {"data": rand(2, 3, 4)})


def test_sum_axis_alias_exclude():
    check_export(mx.sym.sum_axis(data, axis=0, exclude=True, name="y"), {"data": rand(2, 3, 4)})


@pytest.mark.parametrize("kwargs", [dict(axes=(1,)), dict(axes=(0, 2), keepdims=True), dict(axes=(0, 1, 2)),
                                    dict(axes=(-1,))])
def test_moments(kwargs):
    sym = mx.sym.moments(data, name="m", **kwargs)
    check_export(sym, {"data": rand(2, 3, 4)})


def test_moments_feeding_later_nodes():
    """Both outputs wired by index into a consumer (mean + 2 * var)."""
    m = mx.sym.moments(data, axes=(1,), name="m")
    sym = mx.sym.broadcast_add(m[0], 2 * m[1], name="y")
    check_export(sym, {"data": rand(2, 3, 4)})


# -- composite ops -------------------------------------------------------------------------------

@pytest.mark.parametrize("scalar", [1.0, 2.0, 0.5])
def test_smooth_l1(scalar):
    check_export(mx.sym.smooth_l1(data, scalar=scalar, name="y"), {"data": rand(4, 6, low=-3, high=3)})


@pytest.mark.parametrize("kwargs", [dict(), dict(axis=1), dict(axis=0, temperature=2.5)])
def test_softmin(kwargs):
    check_export(mx.sym.softmin(data, name="y", **kwargs), {"data": rand(3, 4, 5, low=-3, high=3)})


@pytest.mark.parametrize("kwargs", [dict(), dict(axis=1, keepdims=True), dict(axis=0, mode="wrap"),
                                    dict(axis=-1, mode="clip")])
def test_pick(kwargs):
    axis = kwargs.get("axis", -1)
    values = rand(3, 4, 5)
    index_shape = list(values.shape)
    del index_shape[axis]
    # out-of-range and negative indices exercise clip / wrap
    index = np.random.default_rng(7).integers(-3, values.shape[axis] + 3, size=index_shape).astype(np.float32)
    check_export(mx.sym.pick(data, other, name="y", **kwargs), {"data": values, "other": index})


@pytest.mark.parametrize("kwargs", [dict(), dict(axis=0), dict(axis=1, is_ascend=False)])
def test_sort(kwargs):
    check_export(mx.sym.sort(data, name="y", **kwargs), {"data": rand(3, 5, 4)})


@pytest.mark.parametrize("bounds", [dict(), dict(lower_bound=0.05, upper_bound=0.6)])
def test_leaky_relu_rrelu(bounds):
    # rrelu has a second (mask) output; networks use the first one
    rrelu = mx.sym.LeakyReLU(data, act_type="rrelu", name="y", **bounds)
    check_export(rrelu[0], {"data": rand(2, 3, 4, low=-3, high=3)})


@pytest.mark.parametrize("act", ["leaky", "elu"])
def test_leaky_relu_other_types_still_exported(act):
    sym = mx.sym.LeakyReLU(data, act_type=act, slope=0.3, name="y")
    check_export(sym, {"data": rand(2, 3, 4, low=-3, high=3)})


def test_leaky_relu_rrelu_both_outputs():
    """As a graph head rrelu exposes its mask too (not drawn at inference); the output must match."""
    from tests.support.mxnet_ops import export_to_onnx, mxnet_forward, onnx_forward

    sym = mx.sym.LeakyReLU(data, act_type="rrelu", name="y")
    x = {"data": rand(2, 5, low=-3, high=3)}
    model = export_to_onnx(sym, {}, x)
    got = onnx_forward(model, x)
    assert len(got) == 2
    np.testing.assert_allclose(got[0], mxnet_forward(sym, {}, x)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("case", ["moments", "sum_exclude", "pick", "sort"])
def test_translations_valid_at_newer_opsets(case, opset):
    x = {"data": rand(2, 3, 4)}
    if case == "moments":
        sym = mx.sym.moments(data, axes=(0, 2), name="m")
    elif case == "sum_exclude":
        sym = mx.sym.sum(data, axis=1, exclude=True, name="y")
    elif case == "pick":
        sym = mx.sym.pick(data, other, axis=1, name="y")
        x["other"] = np.array([[0, 2, 1, 5], [1, 1, 0, 2]], dtype=np.float32)
    else:
        sym = mx.sym.sort(data, axis=1, is_ascend=False, name="y")
    check_export(sym, x, opset=opset)
