"""Softmax family and normalisations (onnx2x/torch/ops/softmax.py, normalization.py).

Reference: onnxruntime, or onnx's reference evaluator where onnxruntime has no kernel. Targets
what the node conformance cases miss: the pre-13 "coerce to 2-D" Softmax/LogSoftmax/Hardmax
(onnx's reference implements only the 13+ semantics, so onnxruntime is the reference),
BatchNormalization at old opsets and with float16 data, LayerNormalization's Mean/InvStdDev
outputs in float16, per-group GroupNormalization scales (opset 18), LRN with an even size and
LpNormalization with p=1.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.onnx_cases import check_converted, node_model

RNG = np.random.default_rng(0)


def check(op: str, feeds: dict, attrs: dict | None = None, opset: int = 13, n_out: int = 1,
          tol: float = 1e-5, reference: str = "ort") -> None:
    model = node_model(op, feeds, [f"y{j}" for j in range(n_out)], attrs or {}, opset=opset, ir_version=8)
    check_converted(model, feeds, reference=reference, rtol=tol, atol=tol, in_float64=True)


X4 = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_family_before_13_flattens_from_axis(op: str, axis: int) -> None:
    check(op, {"x": X4}, {"axis": axis}, opset=11)


def test_softmax_before_13_default_axis_is_1() -> None:
    check("Softmax", {"x": X4}, {}, opset=11)


@pytest.mark.parametrize("ignore_index", [None, -1, 2])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softmax_cross_entropy_ignore_index(ignore_index, reduction: str) -> None:
    x = RNG.standard_normal((3, 5, 2)).astype(np.float32)
    labels = RNG.integers(0, 5, (3, 2)).astype(np.int64)
    if ignore_index is not None:
        labels[0, 0] = ignore_index  # may lie outside [0, C)
    attrs = {"reduction": reduction} | ({} if ignore_index is None else {"ignore_index": ignore_index})
    check("SoftmaxCrossEntropyLoss", {"x": x, "t": labels, "w": RNG.random(5).astype(np.float32)}, attrs,
          opset=13, n_out=2)


def test_batch_norm_opset9_inference() -> None:
    s = RNG.random(3).astype(np.float32)
    check("BatchNormalization", {"x": X4, "s": s, "b": s - 0.5, "m": s * 0.1, "v": s + 1}, {"epsilon": 1e-3}, opset=9)


def test_batch_norm_float16_data_float32_stats() -> None:
    s = RNG.random(3).astype(np.float32)
    check("BatchNormalization", {"x": X4.astype(np.float16), "s": s, "b": s, "m": s, "v": s + 1}, {}, opset=15, tol=2e-3)


def test_batch_norm_training_outputs_running_stats() -> None:
    s = RNG.random(3).astype(np.float32)
    check("BatchNormalization", {"x": X4, "s": s, "b": s, "m": s, "v": s + 1}, {"training_mode": 1, "momentum": 0.7},
          opset=15, n_out=3, reference="onnx")


def test_layer_norm_float16_with_mean_and_inv_std() -> None:
    x = X4.astype(np.float16)
    check("LayerNormalization", {"x": x, "s": RNG.standard_normal((4, 5)).astype(np.float16),
                                 "b": RNG.standard_normal((5,)).astype(np.float16)},
          {"axis": 2}, opset=17, n_out=3, tol=2e-3)


def test_instance_norm_float16() -> None:
    s = RNG.random(3).astype(np.float16)
    check("InstanceNormalization", {"x": X4.astype(np.float16), "s": s, "b": s}, {}, opset=6, tol=2e-3)


@pytest.mark.parametrize("opset,groups_param", [(18, True), (21, False)])
def test_group_norm_scale_per_group_or_channel(opset: int, groups_param: bool) -> None:
    x = RNG.standard_normal((2, 6, 3, 2)).astype(np.float32)
    n = 3 if groups_param else 6
    check("GroupNormalization", {"x": x, "s": RNG.standard_normal(n).astype(np.float32),
                                 "b": RNG.standard_normal(n).astype(np.float32)},
          {"num_groups": 3}, opset=opset, reference="onnx")


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size_window(size: int) -> None:
    # onnx's reference LRN loops over shape[0] for channels, so keep N == C for it to be right
    x = RNG.standard_normal((5, 5, 3, 3)).astype(np.float32)
    check("LRN", {"x": x}, {"size": size, "alpha": 0.3, "beta": 0.6, "bias": 1.5}, opset=13, reference="onnx")


def test_lrn_odd_size_against_onnxruntime() -> None:
    check("LRN", {"x": X4}, {"size": 3, "alpha": 0.2, "beta": 0.75, "bias": 2.0}, opset=13)


def test_lp_norm_p1() -> None:
    check("LpNormalization", {"x": X4}, {"p": 1, "axis": 1}, opset=13)


def test_mean_variance_norm_custom_axes() -> None:
    check("MeanVarianceNormalization", {"x": X4}, {"axes": [1, 3]}, opset=13)
