"""Rewrite sparse tensors of an ONNX model as dense ones before conversion.

onnx-ir (and so the converter) cannot read ``SparseTensorProto``: neither graph
``sparse_initializer`` entries nor ``Constant(sparse_value=...)``. PyTorch code needs the dense
values anyway, so the model proto is rewritten first: a sparse initializer becomes a dense
initializer of the same name, and ``sparse_value`` becomes ``value``. The input proto is never
modified; a copy is made only when the model holds a sparse tensor.
"""
from __future__ import annotations

import logging
import math
from typing import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from common.errors import ModelLoadError, SecurityError

log = logging.getLogger(__name__)

# A sparse tensor is a few numbers that may declare a huge dense shape; refuse to allocate more
# than this for one densified tensor.
MAX_DENSE_BYTES = 1 << 32


def has_sparse(proto: onnx.ModelProto) -> bool:
    """True when any graph, subgraph or model function holds a sparse tensor."""
    if _graph_has_sparse(proto.graph):
        return True
    return any(_nodes_have_sparse(f.node) for f in proto.functions)


def densify_sparse(proto: onnx.ModelProto, *, label: str = "") -> onnx.ModelProto:
    """``proto`` with every sparse initializer / sparse Constant made dense (a copy if changed)."""
    if not has_sparse(proto):
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    _densify_graph(out.graph, label)
    for function in out.functions:
        _densify_nodes(function.node, label)
    return out


def sparse_to_dense(sparse: onnx.SparseTensorProto, *, label: str = "") -> onnx.TensorProto:
    """The dense TensorProto (named like the sparse tensor's values) of one sparse tensor."""
    name = sparse.values.name
    dims = tuple(int(d) for d in sparse.dims)
    try:
        values = numpy_helper.to_array(sparse.values)
        indices = numpy_helper.to_array(sparse.indices) if sparse.HasField("indices") else np.zeros(0, np.int64)
    except Exception as exc:
        raise ModelLoadError(f"sparse tensor {name!r}: unreadable values or indices ({exc})", file=label) from exc
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"sparse tensor {name!r}: negative dimension in {list(dims)}", file=label)
    size = math.prod(dims)
    if size * max(values.dtype.itemsize, 1) > MAX_DENSE_BYTES:
        raise SecurityError(f"sparse tensor {name!r} would densify to {size} elements of {values.dtype} "
                            f"(over {MAX_DENSE_BYTES} bytes)", file=label)
    values = values.reshape(-1)
    linear = _linear_indices(name, indices.astype(np.int64, copy=False), dims, values.size, label)
    if values.dtype == object or values.dtype.kind in "SU":  # strings: absent entries are empty
        dense = np.full(size, "" if values.dtype.kind == "U" else b"", dtype=values.dtype)
    else:
        dense = np.zeros(size, dtype=values.dtype)
    dense[linear] = values
    tensor = numpy_helper.from_array(dense.reshape(dims), name=name)
    if tensor.data_type != sparse.values.data_type:
        raise ModelLoadError(f"sparse tensor {name!r}: element type {sparse.values.data_type} cannot be densified",
                             file=label)
    return tensor


def _linear_indices(name: str, indices: np.ndarray, dims: tuple[int, ...], nnz: int, label: str) -> np.ndarray:
    """Flat positions from ONNX's two index layouts: [NNZ] (linearized) or [NNZ, rank]."""
    size = math.prod(dims)
    if indices.ndim == 1 and indices.size == nnz:
        linear = indices
    elif indices.ndim == 2 and indices.shape == (nnz, len(dims)):
        if nnz and (np.any(indices < 0) or np.any(indices >= np.asarray(dims, dtype=np.int64))):
            raise ModelLoadError(f"sparse tensor {name!r}: index out of range for shape {list(dims)}", file=label)
        linear = np.ravel_multi_index(tuple(indices.T), dims) if nnz else np.zeros(0, np.int64)
    else:
        raise ModelLoadError(f"sparse tensor {name!r}: indices of shape {list(indices.shape)} do not match "
                             f"{nnz} values of a rank-{len(dims)} tensor", file=label)
    if nnz and (linear.min() < 0 or linear.max() >= size):
        raise ModelLoadError(f"sparse tensor {name!r}: index out of range for shape {list(dims)}", file=label)
    return linear


# --- walking the model -------------------------------------------------------------------------
def _graph_has_sparse(graph: onnx.GraphProto) -> bool:
    return len(graph.sparse_initializer) > 0 or _nodes_have_sparse(graph.node)


def _nodes_have_sparse(nodes: Iterable[onnx.NodeProto]) -> bool:
    for node in nodes:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS):
                return True
            if attr.type == onnx.AttributeProto.GRAPH and _graph_has_sparse(attr.g):
                return True
            if attr.type == onnx.AttributeProto.GRAPHS and any(_graph_has_sparse(g) for g in attr.graphs):
                return True
    return False


def _densify_graph(graph: onnx.GraphProto, label: str) -> None:
    for sparse in graph.sparse_initializer:
        graph.initializer.append(sparse_to_dense(sparse, label=label))
        log.debug("densified sparse initializer %s", sparse.values.name)
    del graph.sparse_initializer[:]
    _densify_nodes(graph.node, label)


def _densify_nodes(nodes: Iterable[onnx.NodeProto], label: str) -> None:
    for node in nodes:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _densify_graph(attr.g, label)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _densify_graph(g, label)
            elif attr.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS):
                if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or attr.name != "sparse_value":
                    raise ModelLoadError(f"node {node.name or node.output[0]!r} ({node.op_type}): sparse tensor "
                                         f"attribute {attr.name!r} is only supported as Constant.sparse_value",
                                         file=label)
                dense = sparse_to_dense(attr.sparse_tensor, label=label)
                dense.name = ""
                attr.Clear()
                attr.name = "value"
                attr.type = onnx.AttributeProto.TENSOR
                attr.t.CopyFrom(dense)
