"""Graphs with onnxruntime ``com.microsoft`` ops, checked against onnxruntime through the CLI's path.

``check_with_ort`` runs onnxruntime, converts with ``onnx2x.torch.convert`` (defaults, so
onnx-simplifier runs first as in ``onnx2x torch``), saves the artifact (``.py`` + state_dict),
loads it back and compares every output. ``reference`` may be another model computing the same
function with standard ops, for the ops onnxruntime implements only on GPU.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from onnx2x.torch import artifact, convert
from tests.support.onnx_cases import assert_outputs_match

MS = "com.microsoft"
OPSETS = (("", 17), (MS, 1))


def ms_node_model(op: str, feeds: dict, outputs: Sequence[str], attrs: Optional[dict] = None, *,
                  consts: Sequence[str] = (), domain: str = MS, opset: int = 17,
                  output_types: Optional[dict] = None) -> onnx.ModelProto:
    """One ``op`` node whose inputs are ``feeds`` in order (``None`` = omitted optional input):
    graph inputs typed after the example arrays, except the names in ``consts``, which become
    initializers. Outputs named ``""`` are not produced; the others are untyped unless
    ``output_types`` gives their numpy dtype (for outputs whose type no input determines)."""
    names = [k if v is not None else "" for k, v in feeds.items()]
    node = helper.make_node(op, names, list(outputs), domain=domain, **(attrs or {}))
    inputs = {k: v for k, v in feeds.items() if v is not None and k not in consts}
    model = graph_model([node], inputs, [o for o in outputs if o], {k: feeds[k] for k in consts}, opset=opset)
    for info in model.graph.output:
        if info.name in (output_types or {}):
            info.CopyFrom(helper.make_tensor_value_info(
                info.name, helper.np_dtype_to_tensor_dtype(np.dtype(output_types[info.name])), None))
    return model


def graph_model(nodes: Iterable[onnx.NodeProto], inputs: dict, outputs: Sequence[str],
                consts: Optional[dict] = None, *, opset: int = 17) -> onnx.ModelProto:
    """A model of ``nodes`` with graph inputs typed after example arrays and untyped outputs."""
    graph = helper.make_graph(
        list(nodes), "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)],
                             ir_version=9)


def ort_run(model: onnx.ModelProto, feeds: dict) -> list:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names and v is not None})


def with_output_types(model: onnx.ModelProto, values: Sequence[np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose untyped graph outputs are typed after example ``values``
    (onnx-simplifier, which the conversion runs first, requires typed outputs)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for info, value in zip(out.graph.output, values):
        if not info.type.HasField("tensor_type"):
            info.CopyFrom(helper.make_tensor_value_info(info.name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                        value.shape))
    return out


def run_artifact(model: onnx.ModelProto, feeds: dict, tmp_path: Path, *, simplify: bool = True) -> list:
    """Convert as ``onnx2x torch`` does, save, load the saved files and run them on ``feeds``."""
    gm = convert(model, simplify=simplify)
    saved = artifact.save(gm, Path(tmp_path) / f"model{len(os.listdir(tmp_path))}.pt")[0]
    net = artifact.load(saved)
    args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in gm.onnx_input_names]
    with torch.no_grad():
        out = net(*args)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def check_with_ort(model: onnx.ModelProto, feeds: dict, tmp_path: Path, *, rtol: float = 1e-5,
                   atol: float = 1e-5, reference: Optional[onnx.ModelProto] = None,
                   reference_feeds: Optional[dict] = None, ignore: Sequence[tuple] = (),
                   simplify: bool = True) -> list:
    """Compare onnxruntime on ``reference`` (default: ``model``; fed ``reference_feeds``, default
    ``feeds``) with the saved conversion of ``model``; ``ignore`` lists (output index, numpy index)
    regions left out of the comparison (values onnxruntime leaves unspecified, such as padded query
    rows). Returns the outputs."""
    feeds = {k: v for k, v in feeds.items() if v is not None}
    expected = ort_run(reference if reference is not None else model,
                       feeds if reference_feeds is None else reference_feeds)
    got = run_artifact(with_output_types(model, expected), feeds, tmp_path, simplify=simplify)
    expected = [np.array(e, copy=True) for e in expected]
    for out_index, region in ignore:
        expected[out_index][region] = 0
        got[out_index][region] = 0
    assert_outputs_match(got, expected, rtol=rtol, atol=atol)
    return got


def rng_arrays(seed: int = 0):
    """``rand(*shape)``: seeded standard-normal float32 arrays."""
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    rand.rng = rng  # type: ignore[attr-defined]
    return rand


def slow_after(n: int, cases: Sequence) -> list:
    """``cases`` for ``pytest.mark.parametrize`` with all but the first ``n`` marked slow: the
    default run keeps a representative few, ``pytest -m slow`` runs the rest."""
    out = []
    for i, case in enumerate(cases):
        if i < n:
            out.append(case)
        else:
            values = case if isinstance(case, tuple) else (case,)
            out.append(pytest.param(*values, marks=pytest.mark.slow))
    return out
