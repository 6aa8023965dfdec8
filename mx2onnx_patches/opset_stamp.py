"""Stamp the caller's opset consistently: model ``opset_import``, IR version and checker context.

MXNet's ``export_model`` converts at ``onnx.defs.onnx_opset_version()`` (28 with onnx 1.23) and
``helper.make_model`` stamps that opset with IR version 14, which onnxruntime 1.31 refuses; its
``create_onnx_graph_proto`` calls ``checker.check_graph(graph)`` with the default context, which
also carries the newest opset, so nodes emitted in their opset-13 form (Reduce* with an ``axes``
attribute) fail the check. The repaired ``export_model`` takes ``opset_version`` (default 13),
converts at that opset, stamps it with the smallest IR version that carries it, and checks the
graph against that same opset. Opsets above 13 are accepted where the emitted nodes are valid
there (the checker decides, naming the node).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import onnx

from ._patching import Patch

log = logging.getLogger(__name__)

DEFAULT_OPSET = 13
MIN_OPSET = 12  # the oldest opset MXNet 1.9.1 has translations for

_patch = Patch()


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


def validate_opset(opset: int) -> int:
    opset = int(opset)
    if not MIN_OPSET <= opset <= max_opset():
        raise ValueError(f"opset {opset} is not supported: choose {MIN_OPSET}..{max_opset()} "
                         f"(MXNet translates from {MIN_OPSET}; {DEFAULT_OPSET} is the default)")
    return opset


def ir_version_for(opset: int) -> int:
    """The smallest IR version whose release carries ``opset`` (what runtimes expect)."""
    return onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)], ignore_unknown=True)


def checker_context(opset: int) -> Any:
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = ir_version_for(opset)
    ctx.opset_imports = {"": opset}
    return ctx


def check_graph(graph: onnx.GraphProto, opset: int) -> None:
    onnx.checker.check_graph(graph, checker_context(opset))


def wrap_graph(graph: onnx.GraphProto, opset: int, *, producer: str = "mx2onnx_patches") -> onnx.ModelProto:
    """A model holding ``graph``, stamped with ``opset`` and the smallest IR version carrying it."""
    model = onnx.ModelProto()
    model.ir_version = ir_version_for(opset)
    model.producer_name = producer
    model.opset_import.add(domain="", version=opset)
    model.graph.CopyFrom(graph)  # upb messages cannot be moved; MXNet's own make_model copies too
    return model


def tensor_types(in_types: Any, count: int) -> list[int]:
    """ONNX element types for the inputs from numpy dtypes (one for all, or one each)."""
    types = in_types if isinstance(in_types, (list, tuple)) else [in_types] * count
    return [onnx.helper.np_dtype_to_tensor_dtype(np.dtype(t)) for t in types]


def merge_params(params: Any) -> dict:
    """``dict`` or ``(arg_params, aux_params)`` -> one dict, as MXNet's exporter expects."""
    if isinstance(params, dict):
        return params
    if isinstance(params, (list, tuple)) and len(params) == 2:
        merged = dict(params[0])
        merged.update(params[1])
        return merged
    raise ValueError("params must be a dict or (arg_params, aux_params)")


@contextlib.contextmanager
def _checker_at(opset: int) -> Iterator[None]:
    """During a stock graph build, make ``checker.check_graph`` use the chosen opset."""
    original = onnx.checker.check_graph
    onnx.checker.check_graph = lambda graph, ctx=None, **kw: original(graph, checker_context(opset))
    try:
        yield
    finally:
        onnx.checker.check_graph = original


def _wrap_create_graph(original: Any) -> Any:
    @functools.wraps(original)
    def create_onnx_graph_proto(self, sym, params, in_shapes, in_types, verbose=False, opset_version=None,
                                dynamic=True, dynamic_input_shapes=None):
        opset = DEFAULT_OPSET if opset_version is None else opset_version
        with _checker_at(opset):
            return original(self, sym, params, in_shapes, in_types, verbose=verbose, opset_version=opset,
                            dynamic=dynamic, dynamic_input_shapes=dynamic_input_shapes)

    create_onnx_graph_proto.__x2onnx_opset_stamp__ = True
    return create_onnx_graph_proto


def build_model(sym: Any, params: Any, in_shapes: Sequence[Sequence[int]], in_types: Any = np.float32, *,
                opset_version: int = DEFAULT_OPSET, verbose: bool = False, dynamic: bool = False,
                dynamic_input_shapes: Optional[Sequence] = None) -> onnx.ModelProto:
    """Run MXNet's graph conversion (whatever repairs are installed) and return the stamped model."""
    from mxnet.base import string_types
    from mxnet.onnx.mx2onnx._export_helper import load_module
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    opset = validate_opset(opset_version)
    if isinstance(sym, string_types):
        if not isinstance(params, string_types):
            raise ValueError("a symbol file needs a params file")
        sym, params = load_module(sym, params)
    params = merge_params(params)
    types = tensor_types(in_types, len(in_shapes))
    graph = MXNetGraph().create_onnx_graph_proto(sym, params, list(in_shapes), types, verbose=verbose,
                                                 opset_version=opset, dynamic=dynamic,
                                                 dynamic_input_shapes=dynamic_input_shapes)
    return wrap_graph(graph, opset)


def export_model(sym, params, in_shapes=None, in_types=np.float32, onnx_file_path="model.onnx", verbose=False,
                 dynamic=False, dynamic_input_shapes=None, run_shape_inference=False, input_type=None,
                 input_shape=None, opset_version=DEFAULT_OPSET):
    """MXNet's ``export_model`` with ``opset_version`` (default 13) stamped consistently."""
    if input_type is not None:
        in_types = input_type
    if input_shape is not None:
        in_shapes = input_shape
    model = build_model(sym, params, in_shapes, in_types, opset_version=opset_version, verbose=verbose,
                        dynamic=dynamic, dynamic_input_shapes=dynamic_input_shapes)
    if run_shape_inference:
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - same policy as MXNet: keep the model without inference
            log.info("shape inference failed; the model is kept without it")
    with open(onnx_file_path, "wb") as handle:
        handle.write(model.SerializeToString())
    return onnx_file_path


def is_installed() -> bool:
    return _patch.active


def install() -> None:
    if _patch.active:
        return
    import mxnet.onnx
    from mxnet.onnx import mx2onnx
    from mxnet.onnx.mx2onnx import _export_model
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    _patch.set(MXNetGraph, "create_onnx_graph_proto", _wrap_create_graph(MXNetGraph.create_onnx_graph_proto))
    for module in (_export_model, mx2onnx, mxnet.onnx):
        _patch.set(module, "export_model", export_model)


def uninstall() -> None:
    _patch.undo()
