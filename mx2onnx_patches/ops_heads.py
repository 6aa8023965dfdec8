"""Softmax activations and loss heads, written as MXNet computes them at inference.

A loss head's forward ignores its label (the label only shapes the gradient), so the exported
graph keeps the prediction and the graph builder drops the label argument. MXNet 1.9.1's exporter
lacks SoftmaxActivation, MAERegressionOutput and SVMOutput, and its SoftmaxOutput ignores
``multi_output`` and ``preserve_shape``. MXNet's softmax axes:

- SoftmaxOutput: over all non-batch dims flattened by default, over axis 1 with
  ``multi_output=True`` (it takes precedence), over the last axis with ``preserve_shape=True``;
- SoftmaxActivation: over the last axis (``mode='instance'``: MXNet flattens all but the last
  axis into instances, whatever its documentation says) or over axis 1 (``mode='channel'``).

MXNet's MKL-DNN kernel (pip's CPU build) computes a default SoftmaxOutput on a 4-D input over the
last axis instead; the translation follows the operator's definition, which MXNet's own kernel
implements (also on GPU).
"""
from __future__ import annotations

from .ops_common import Emitter
from .translations import translation


def _softmax_on_axis(e: Emitter, x: str, axis: int, rank: int, out: str) -> str:
    """Softmax over one axis; before opset 13 ONNX Softmax flattens from ``axis`` on, so any axis
    but the last is moved to the end and back."""
    axis %= rank
    if e.opset >= 13 or axis == rank - 1:
        return e.op("Softmax", [x], out, axis=axis)
    perm = [i for i in range(rank) if i != axis] + [axis]
    inverse = [perm.index(i) for i in range(rank)]
    moved = e.op("Transpose", [x], perm=perm)
    return e.op("Transpose", [e.op("Softmax", [moved], axis=rank - 1)], out, perm=inverse)


def _softmax_per_instance(e: Emitter, x: str, out: str) -> str:
    """Softmax over everything but the batch axis, in the input's shape."""
    flat = e.op("Flatten", [x], axis=1)
    return e.op("Reshape", [e.op("Softmax", [flat], axis=1), e.shape(x)], out)


@translation("SoftmaxActivation", since=12)
def convert_softmax_activation(node, **kwargs):
    e = Emitter(node, kwargs)
    mode = e.attr_str("mode", "instance")
    x = e.inputs[0]
    rank = len(e.need_input_shape(0))
    if mode == "instance":
        _softmax_on_axis(e, x, -1, rank, e.name)
    elif mode == "channel":
        _softmax_on_axis(e, x, 1, rank, e.name)
    else:
        raise e.fail(f"mode={mode} is not supported")
    return e.done()


@translation("SoftmaxOutput", since=12)
def convert_softmax_output(node, **kwargs):
    e = Emitter(node, kwargs)
    x = e.inputs[0]
    rank = len(e.need_input_shape(0))
    if e.attr_bool("multi_output", False) and rank > 1:
        _softmax_on_axis(e, x, 1, rank, e.name)
    elif e.attr_bool("preserve_shape", False):
        _softmax_on_axis(e, x, -1, rank, e.name)
    else:
        _softmax_per_instance(e, x, e.name)
    return e.done()


@translation("LogisticRegressionOutput", since=12)
def convert_logistic_regression_output(node, **kwargs):
    e = Emitter(node, kwargs)
    e.op("Sigmoid", [e.inputs[0]], e.name)
    return e.done()


@translation(("LinearRegressionOutput", "MAERegressionOutput", "SVMOutput"), since=12)
def convert_identity_head(node, **kwargs):
    """Regression and SVM heads pass their prediction through unchanged at inference."""
    e = Emitter(node, kwargs)
    e.op("Identity", [e.inputs[0]], e.name)
    return e.done()
