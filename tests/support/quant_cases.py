"""Quantized models for the onnx2x tests: com.microsoft op graphs and how outputs are judged.

How a quantized output is judged against onnxruntime (:func:`assert_within_one_step`): onnx2x
computes what onnxruntime's CPU kernels compute (integer accumulation, float32 scale ratios, round
half to even), so most elements agree bit for bit; the rest differ because a float32 value lands
within an ulp of a rounding boundary (a transcendental approximated differently, a sum in another
order, a fused multiply-add), which moves the result by exactly one quantization step. So: every
element within one step (one integer code; for a float output, one step of the scale it was
dequantized with), and at most ``max_fraction`` of them off at all.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from onnx2x.torch import convert

MS_OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


def ms_model(nodes: Sequence[onnx.NodeProto], inputs: Iterable[tuple], outputs: Iterable[tuple],
             initializers: dict[str, np.ndarray], *, opset: int = 17) -> onnx.ModelProto:
    """A model importing com.microsoft version 1; inputs/outputs as ``(name, TensorProto type, shape)``."""
    graph = helper.make_graph(
        list(nodes), "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def ort_session(model: onnx.ModelProto, *, optimized: bool = True) -> ort.InferenceSession:
    """An onnxruntime CPU session; ``optimized=False`` disables its graph optimizations (no QDQ fusion)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, optimized: bool = True) -> list[np.ndarray]:
    """onnxruntime's CPU outputs (see :func:`ort_session`)."""
    return ort_session(model, optimized=optimized).run(None, feeds)


def torch_run(model: "onnx.ModelProto | str", feeds: dict[str, np.ndarray], *, simplify: bool = False,
              names: Optional[Sequence[str]] = None) -> list[np.ndarray]:
    """The onnx2x conversion of ``model`` run on ``feeds`` (in graph input order)."""
    gm = convert(model, simplify=simplify)
    order = names or list(gm.onnx_input_names)
    with torch.no_grad():
        out = gm(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in order])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def step_differences(got: np.ndarray, expected: np.ndarray, step: float = 1.0) -> np.ndarray:
    """|got - expected| in quantization steps (integer outputs: in codes)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, expected.dtype, got.shape, expected.shape)
    return np.abs(got.astype(np.float64) - expected.astype(np.float64)) / step


def assert_within_one_step(got: np.ndarray, expected: np.ndarray, *, step: float = 1.0,
                           max_fraction: float = 0.01, float_slack: float = 1e-5) -> float:
    """Every element within one step of onnxruntime's, at most ``max_fraction`` off at all
    (a float output counts as off when it differs by more than ``float_slack`` steps); returns
    the fraction that differs."""
    diff = step_differences(got, expected, step)
    assert diff.max(initial=0) <= 1 + float_slack, f"max difference {diff.max():.4g} steps (step {step:g})"
    off = float(np.mean(diff > float_slack)) if diff.size else 0.0
    assert off <= max_fraction, f"{100 * off:.3g}% of elements differ by a step (allowed {100 * max_fraction:g}%)"
    return off


def quantize_uniform(rng: np.random.Generator, shape: Sequence[int], dtype: type) -> np.ndarray:
    """Codes spread over the whole range of an 8-bit type."""
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)
