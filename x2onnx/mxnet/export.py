"""MXNet -> ONNX export: MXNet's own exporter, repaired, then simplified and verified.

:func:`export` loads the symbol and parameters (paths or objects), works out the inputs,
converts with MXNet 1.9.1's translations under :mod:`mx2onnx_patches`, stamps the opset,
simplifies with onnxsim and compares with MXNet on seeded random inputs. The returned model
records in ``metadata_props[TENSOR_MAP_KEY]`` (JSON) which ONNX tensor holds each MXNet internal
output (``sym.get_internals()`` names), for locating the first divergent node.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import onnx

import mx2onnx_patches
from common import progress
from common.errors import ConversionError, ConversionFailure
from common.metadata import CONSTANT_INITIALIZERS_KEY, set_json
from mx2onnx_patches import graph_builder, opset_stamp

from . import inputs as inputs_mod
from . import loading, weights
from .simplify import simplify_model
from common.verify.inputs import ImageOptions
from common.verify.verdict import Verdict

from .verify import verify_model

log = logging.getLogger(__name__)

TENSOR_MAP_KEY = "x2onnx.mxnet_tensor_map"
PRODUCER = "x2onnx"
PathLike = Union[str, "os.PathLike[str]"]


def _existing_tensors(model: onnx.ModelProto) -> set[str]:
    names = {o for n in model.graph.node for o in n.output}
    names.update(i.name for i in model.graph.input)
    names.update(t.name for t in model.graph.initializer)
    return names


def _with_batch(shapes: Mapping[str, tuple[int, ...]], batch: Optional[int]) -> dict[str, tuple[int, ...]]:
    if batch is None:
        return dict(shapes)
    return {n: (batch,) + tuple(s[1:]) if s else s for n, s in shapes.items()}


@dataclass
class Exported:
    """What :func:`export_report` returns: the model and what was checked."""

    model: onnx.ModelProto
    report: Optional[Verdict]
    inputs: inputs_mod.InputPlan
    labels: list[str]


def export(symbol: Any, params: Any, input_shapes: Any = None, *, opset: int = opset_stamp.DEFAULT_OPSET,
           dynamic_batch: bool = False, simplify: bool = True, verify: bool = True,
           input_dtypes: Optional[Mapping[str, Any]] = None, seed: int = 0, atol: Optional[float] = None,
           rtol: Optional[float] = None, verify_batch: Optional[int] = None, input_files: Sequence[str] = (),
           image: Optional[ImageOptions] = None) -> onnx.ModelProto:
    """Export an MXNet model to ONNX and return the checked ``onnx.ModelProto``.

    ``symbol``: a ``-symbol.json`` path or an ``mx.sym.Symbol``. ``params``: a ``.params`` path, a
    dict (``arg:``/``aux:`` prefixes allowed) or ``(arg_params, aux_params)``. ``input_shapes``:
    ``{name: shape}``, or shapes in input order; inputs left out take the shape the symbol
    declares. ``dynamic_batch`` leaves dimension 0 of every input free (``batch``).
    ``verify`` compares with MXNet on seeded random inputs (at ``verify_batch`` if given), or on
    the ``input_files`` items where they give an input (``[NAME=]FILE``: .npy, .npz or an image
    read as ``image`` says; see :func:`common.verify.inputs.prepare_inputs`), and raises
    :class:`~common.errors.VerificationError` naming the first divergent node.
    """
    return export_report(symbol, params, input_shapes, opset=opset, dynamic_batch=dynamic_batch, simplify=simplify,
                         verify=verify, input_dtypes=input_dtypes, seed=seed, atol=atol, rtol=rtol,
                         verify_batch=verify_batch, input_files=input_files, image=image).model


def export_report(symbol: Any, params: Any, input_shapes: Any = None, *, opset: int = opset_stamp.DEFAULT_OPSET,
                  dynamic_batch: bool = False, simplify: bool = True, verify: bool = True,
                  input_dtypes: Optional[Mapping[str, Any]] = None, seed: int = 0, atol: Optional[float] = None,
                  rtol: Optional[float] = None, verify_batch: Optional[int] = None, input_files: Sequence[str] = (),
                  image: Optional[ImageOptions] = None) -> Exported:
    """:func:`export`, returning the verification figures and the input plan with the model."""
    started = time.perf_counter()
    progress.stage("load")
    mx2onnx_patches.apply()
    sym, sym_file = loading.load_symbol(symbol)
    arg_params, aux_params, params_file = loading.load_params(params)
    try:
        opset = opset_stamp.validate_opset(opset)
    except ValueError as exc:
        raise ConversionError(str(exc)) from None
    graph = json.loads(sym.tojson())
    nodes = graph["nodes"]
    all_params = weights.merged(arg_params, aux_params)
    params_label = params_file if params_file != "<params>" else None
    all_params = loading.drop_unused_params(sym, all_params, params_label)
    aux_names = set(sym.list_auxiliary_states())
    arg_params = {k: v for k, v in all_params.items() if k not in aux_names}
    aux_params = {k: v for k, v in all_params.items() if k in aux_names}
    weights.check_complete(nodes, set(sym.list_auxiliary_states()), all_params,
                           params_file if params_file != "<params>" else None)
    try:
        progress.stage("convert")
        plan = inputs_mod.plan_inputs(sym, nodes, all_params, input_shapes, input_dtypes, graph["heads"])
        all_params = loading.conform_params(sym, all_params, plan.shapes, plan.dtypes, params_label)
        arg_params = {k: v for k, v in all_params.items() if k not in aux_names}
        aux_params = {k: v for k, v in all_params.items() if k in aux_names}
        dynamic = {n: (None,) + tuple(s[1:]) for n, s in plan.shapes.items() if s} if dynamic_batch else None
        try:
            model, result = _build(sym, all_params, plan, opset, dynamic)
        except ConversionFailure as exc:
            if opset <= opset_stamp.DEFAULT_OPSET or "not valid ONNX at opset" not in exc.message:
                raise
            model, result = _upgraded(sym, all_params, plan, opset, dynamic, exc)
    except ConversionError as exc:
        raise exc.with_context(file=sym_file if sym_file != "<symbol>" else None)
    log.info("converted %d MXNet nodes into %d ONNX nodes in %.2f s", len(nodes), len(model.graph.node),
             time.perf_counter() - started)
    present = _existing_tensors(model)
    if simplify:
        progress.stage("simplify")
        model, survivors = simplify_model(model, label=sym_file, params=all_params)
        if survivors is not None:  # fusions can keep a name for a new value: map only survivors
            present = survivors
    tensor_map = {k: v for k, v in result.tensor_map.items() if v in present}
    set_json(model, TENSOR_MAP_KEY, tensor_map)
    constants = _exporter_constants(model, all_params)
    if constants:
        set_json(model, CONSTANT_INITIALIZERS_KEY, constants)
    report = None
    if verify:
        progress.stage("verify")
        shapes = _with_batch(plan.shapes, verify_batch if dynamic_batch else None)
        try:
            report = verify_model(model, sym, arg_params, aux_params, shapes, plan.dtypes, tensor_map=tensor_map,
                                  seed=seed, atol=atol, rtol=rtol, input_files=input_files, image=image)
        except ConversionError as exc:
            raise exc.with_context(file=sym_file if sym_file != "<symbol>" else None)
        log.info("verified against MXNet: %s", report.comparison.summary())
    log.info("export done in %.2f s", time.perf_counter() - started)
    return Exported(model, report, plan, result.labels)


_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})


def _exporter_constants(model: onnx.ModelProto, params: Mapping[str, Any]) -> list[str]:
    """The float initializers that are no MXNet parameter: scalar operands and the like, which
    the exporter made (``onnx2x torch --trainable`` keeps them out of the trainable parameters)."""
    return sorted(t.name for t in model.graph.initializer if t.data_type in _FLOAT_TYPES and t.name not in params)


def _build(sym: Any, params: Mapping[str, Any], plan: inputs_mod.InputPlan, opset: int,
           dynamic: Optional[Mapping[str, Any]]) -> tuple[onnx.ModelProto, graph_builder.BuildResult]:
    """Convert into a fresh model stamped with ``opset`` (the weights are created in it directly)."""
    model = onnx.ModelProto()
    model.ir_version = opset_stamp.ir_version_for(opset)
    model.producer_name = PRODUCER
    model.producer_version = "mxnet-1.9.1"
    model.opset_import.add(domain="", version=opset)
    result = graph_builder.build_graph(sym, params, plan.shapes, input_dtypes=plan.dtypes, opset=opset,
                                       dynamic_input_shapes=dynamic, target=model.graph)
    return model, result


def _upgraded(sym: Any, params: Mapping[str, Any], plan: inputs_mod.InputPlan, opset: int,
              dynamic: Optional[Mapping[str, Any]], error: ConversionFailure
              ) -> tuple[onnx.ModelProto, graph_builder.BuildResult]:
    """Some translation emits an opset-13 form the requested opset no longer accepts (Reduce*
    ``axes`` became an input at 18): convert at 13 and let onnx's version converter upgrade."""
    log.info("%s; converting at opset %d and upgrading to %d", error, opset_stamp.DEFAULT_OPSET, opset)
    model, result = _build(sym, params, plan, opset_stamp.DEFAULT_OPSET, dynamic)
    try:
        upgraded = onnx.version_converter.convert_version(model, opset)
        upgraded.ir_version = opset_stamp.ir_version_for(opset)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 - the converter raises several types; keep the first error
        log.info("onnx's version converter could not upgrade: %s", exc)
        raise error from None
    return upgraded, result


def export_checkpoint(prefix: PathLike, epoch: int, input_shapes: Any = None, **kwargs: Any) -> onnx.ModelProto:
    """:func:`export` for MXNet's checkpoint naming ``PREFIX-symbol.json`` + ``PREFIX-%04d.params``."""
    sym_path, params_path = loading.checkpoint_paths(prefix, epoch)
    return export(str(sym_path), str(params_path), input_shapes, **kwargs)
