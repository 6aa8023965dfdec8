"""Reductions and linear algebra (onnx2x/torch/ops/reduce.py, linalg.py) against onnxruntime.

The node conformance cases cover the common paths (and run in test_onnx2x_conformance.py);
these target what they miss: the old attribute form of ``axes``, axes known at conversion time
(folded into the call) and at run time, integer dtypes that torch would promote, empty
reductions for integers, ArgMax ties, CumSum with a constant axis, integer Gemm/MatMul,
batched matrix-vector MatMul and MatMulInteger with per-column zero points.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.onnx_cases import check_converted, node_model


def check(op: str, feeds: dict, attrs: dict | None = None, opset: int = 13, consts: dict | None = None,
          rtol: float = 1e-5, reference: str = "ort") -> None:
    """Compare with onnxruntime, or with onnx's reference evaluator where onnxruntime lacks the kernel."""
    model = node_model(op, feeds, ["y0"], attrs or {}, opset=opset, ir_version=8, consts=consts)
    check_converted(model, feeds, reference=reference, rtol=rtol, atol=1e-6)


RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
XI = RNG.integers(-50, 50, (2, 3, 4, 5)).astype(np.int32)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_attribute_axes_opset11(op: str, keepdims: int) -> None:
    check(op, {"x": X}, {"axes": [1, -1], "keepdims": keepdims}, opset=11)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1"])
def test_integer_reductions_keep_dtype(op: str) -> None:
    x = (XI % 7).astype(np.int32) if op == "ReduceProd" else XI
    check(op, {"x": x}, {"keepdims": 0}, opset=18, consts={"axes": np.array([0, 2], np.int64)})


def test_reduce_mean_int_truncates_like_onnx() -> None:
    check("ReduceMean", {"x": XI}, {"axes": [2, 3]}, opset=11)


@pytest.mark.parametrize("axes", [np.array([1], np.int64), np.array([], np.int64)])
@pytest.mark.parametrize("noop", [0, 1])
def test_runtime_axes_and_noop(axes: np.ndarray, noop: int) -> None:
    check("ReduceSum", {"x": X, "axes": axes}, {"noop_with_empty_axes": noop}, opset=13)


def test_reduce_max_empty_int_gives_dtype_min() -> None:
    check("ReduceMax", {"x": np.zeros((2, 0, 3), np.int32)}, {"keepdims": 1}, opset=18,
          consts={"axes": np.array([1], np.int64)})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_ties(op: str, last: int) -> None:
    x = RNG.integers(0, 3, (3, 6, 2)).astype(np.float32)  # many ties
    check(op, {"x": x}, {"axis": 1, "keepdims": 0, "select_last_index": last}, opset=12)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum_constant_axis_int32(exclusive: int, reverse: int) -> None:
    check("CumSum", {"x": XI}, {"exclusive": exclusive, "reverse": reverse}, opset=14,
          consts={"axis": np.array(-2, np.int64)})


def test_gemm_integer_with_broadcast_c() -> None:
    a = RNG.integers(-9, 9, (3, 4)).astype(np.int32)
    b = RNG.integers(-9, 9, (5, 4)).astype(np.int32)
    c = RNG.integers(-9, 9, (5,)).astype(np.int32)
    check("Gemm", {"a": a, "b": b, "c": c}, {"transB": 1}, opset=13, reference="onnx")  # no int Gemm in ORT


def test_gemm_float_all_attributes_column_bias() -> None:
    a = RNG.standard_normal((4, 3)).astype(np.float32)
    b = RNG.standard_normal((5, 4)).astype(np.float32)
    c = RNG.standard_normal((3, 1)).astype(np.float32)
    check("Gemm", {"a": a, "b": b, "c": c}, {"transA": 1, "transB": 1, "alpha": 0.3, "beta": -2.0}, opset=13)


def test_matmul_int64_broadcast() -> None:
    a = RNG.integers(-99, 99, (2, 1, 3, 4)).astype(np.int64)
    b = RNG.integers(-99, 99, (5, 4, 2)).astype(np.int64)
    check("MatMul", {"a": a, "b": b}, opset=13)


@pytest.mark.parametrize("a_shape,b_shape", [((32, 24, 16), (32, 16, 1)), ((2, 3, 24, 16), (3, 16, 1)),
                                             ((3, 24, 16), (3, 16, 2))],
                         ids=["batched-matvec", "broadcast-matvec", "two-columns"])
def test_batched_matrix_vector_products(a_shape: tuple, b_shape: tuple) -> None:
    """MatMul of a batch of matrices with a batch of [K, 1] vectors (per-token expert weights)
    runs as runtime.linalg.matrix_vector_products, broadcasting as torch.matmul does; a result
    with more columns stays torch.matmul. Both match onnxruntime, and torch.export traces it."""
    import torch

    from onnx2x.torch.runtime import linalg as rt_linalg

    feeds = {"a": RNG.standard_normal(a_shape).astype(np.float32), "b": RNG.standard_normal(b_shape).astype(np.float32)}
    model = node_model("MatMul", feeds, ["y0"], {}, opset=13, ir_version=8)
    gm = check_converted(model, feeds, rtol=1e-5, atol=1e-5)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets == ([rt_linalg.matrix_vector_products] if b_shape[-1] == 1 else [torch.matmul])
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    np.testing.assert_allclose(torch.export.export(gm, args).module()(*args).numpy(), gm(*args).numpy(), rtol=1e-6)


def test_matmul_integer_per_column_b_zero_point() -> None:
    a = RNG.integers(0, 255, (2, 4, 3)).astype(np.uint8)
    b = RNG.integers(0, 255, (3, 5)).astype(np.uint8)
    check("MatMulInteger", {"a": a, "b": b, "a_zp": np.array(7, np.uint8), "b_zp": RNG.integers(0, 255, (5,)).astype(np.uint8)},
          opset=10)


def test_einsum_ellipsis_with_spaces() -> None:
    a = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    b = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    check("Einsum", {"a": a, "b": b}, {"equation": "...ij, ...jk -> ...ik"}, opset=12)
