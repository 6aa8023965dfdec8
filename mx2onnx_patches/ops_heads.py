"""Softmax activations and loss heads, written as MXNet computes them at inference.

A loss head's forward ignores its label (the label only shapes the gradient), so the exported
graph keeps the prediction and the graph builder drops the label argument. MXNet 1.9.1's exporter
lacks SoftmaxActivation, MAERegressionOutput and SVMOutput, and its SoftmaxOutput ignores
``multi_output`` and ``preserve_shape``. MXNet's softmax axes:

- SoftmaxOutput (``src/operator/softmax_output-inl.h``): with ``multi_output`` (it takes
  precedence) the input is read as (N, C, rest) and normalised over C (axis 1, every trailing
  position on its own); else with ``preserve_shape`` over the last axis; else the input is read as
  (N, everything else) and normalised over all non-batch elements together (a 1-D input is N
  one-element instances: all ones);
- SoftmaxActivation: ``mode='instance'`` over the last axis (MXNet flattens all but the last
  axis into instances, whatever its documentation says), ``mode='channel'`` over axis 1 of an
  input of rank 3 or more (MXNet refuses a lower rank when it runs).

These definitions are the reference: MXNet's own kernels compute them (GPU, and CPU with
``MXNET_MKLDNN_ENABLED=0``), and SoftmaxOutput's gradient is defined on them. MXNet 1.9.1's pip
CPU build runs a oneDNN kernel instead for a float32 SoftmaxOutput without ``multi_output`` on a
1-D, 2-D or 4-D input (oneDNN's dispatch ranks), which normalises over the last axis: without
``preserve_shape`` that differs from the definition on 1-D and 4-D inputs (4-D: max-abs 0.68 on
inputs in [-2, 2]; 1-D: the whole vector normalised instead of ones). That kernel runs with
``MXNET_SUBGRAPH_BACKEND=NONE`` too; only ``MXNET_MKLDNN_ENABLED=0`` at start-up turns it off.
"""
from __future__ import annotations

from common.errors import ModelLoadError

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
        if rank < 3:  # MXNet's check when it runs the node (shape inference lets it through)
            raise ModelLoadError(f"MXNet cannot run this node: Input need to have a least 3 dimensions when "
                                 f"mode=channel (the input has {rank})", node=e.name, op_type=e.op_type)
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
