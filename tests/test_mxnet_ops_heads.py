"""MXNet -> ONNX loss-head translations (mx2onnx_patches/ops_heads.py) against MXNet's own forward."""
from __future__ import annotations

from tests.support.mxnet_ops import check_export, mx, rand


def test_linear_regression_output_is_identity_at_inference():
    data = mx.sym.var("data")
    fc = mx.sym.FullyConnected(data, num_hidden=3, name="fc")
    sym = mx.sym.LinearRegressionOutput(fc, name="lro")
    model = check_export(sym, {"data": rand(4, 5)})
    assert [i.name for i in model.graph.input] == ["data"]  # the label is not an input


def test_linear_regression_output_with_named_label_and_grad_scale():
    data = mx.sym.var("data")
    sym = mx.sym.LinearRegressionOutput(mx.sym.tanh(data), mx.sym.var("target"), grad_scale=2.0, name="lro")
    model = check_export(sym, {"data": rand(2, 3, 4)})
    assert [i.name for i in model.graph.input] == ["data"]
