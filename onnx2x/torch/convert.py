"""ONNX -> torch.fx.GraphModule: the public entry point of the PyTorch converter."""
from __future__ import annotations

import logging
from typing import Optional

import onnx
import torch.fx as fx

from common import ir as cir
from common.errors import ConversionError, ModelLoadError
from common.model_io import PathLike, as_model_proto

from .builder import GraphBuilder
from .simplify import simplify as run_onnxsim
from .sparse import densify_sparse

log = logging.getLogger(__name__)


def prepare(
    model: "onnx.ModelProto | PathLike",
    *,
    simplify: bool = True,
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
) -> tuple[onnx.ModelProto, str]:
    """Load, densify sparse tensors, simplify (optionally), inline local functions and infer shapes."""
    proto, label = as_model_proto(model)
    proto = densify_sparse(proto, label=label)
    given = model if isinstance(model, onnx.ModelProto) else None
    if simplify:
        proto = run_onnxsim(proto, input_shapes, label=label)
    elif input_shapes:
        proto = _fix_input_shapes(proto, input_shapes, label)
    if len(proto.functions):
        try:
            proto = onnx.inliner.inline_local_functions(proto)
        except Exception as exc:
            raise ModelLoadError(f"cannot inline model-local functions ({' '.join(str(exc).split())[:200]})",
                                 file=label) from exc
    # In place (no serialized copy of the weights) unless the proto is the caller's own object.
    proto = cir.infer_shapes(proto, in_place=proto is not given)
    return proto, label


def _fix_input_shapes(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], label: str) -> onnx.ModelProto:
    from common.errors import ShapeError

    names = {i.name: i for i in proto.graph.input}
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for name, shape in shapes.items():
        if name not in names:
            raise ShapeError(f"--input-shape names {name!r}, which is not a model input "
                             f"(inputs: {', '.join(names)})", file=label)
        target = next(i for i in out.graph.input if i.name == name)
        dims = target.type.tensor_type.shape
        del dims.dim[:]
        for d in shape:
            dims.dim.add().dim_value = int(d)
    return out


def convert(
    model: "onnx.ModelProto | PathLike",
    *,
    simplify: bool = True,
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
) -> fx.GraphModule:
    """Convert an ONNX model (proto or path) to a ``torch.fx.GraphModule``.

    The module's forward takes the ONNX graph inputs in order and returns one tensor, or a tuple
    when the graph has several outputs. ``gm.onnx_input_names``, ``gm.onnx_output_names``,
    ``gm.onnx_param_names`` (attribute -> initializer) and ``gm.onnx_value_to_fx`` (ONNX tensor
    name -> fx node name) tie the module back to the ONNX graph.
    """
    proto, label = prepare(model, simplify=simplify, input_shapes=input_shapes)
    return convert_prepared(proto, label)


def convert_prepared(proto: onnx.ModelProto, label: str = "") -> fx.GraphModule:
    """Convert a model that :func:`prepare` already processed."""
    model = cir.from_proto(proto, file=label)
    opsets = {("" if d == "ai.onnx" else d): int(v) for d, v in model.opset_imports.items()}
    opsets.setdefault("", 1)
    builder = GraphBuilder(opsets, file=label)
    try:
        builder.convert_graph(model.graph)
        return builder.finish(list(model.graph.outputs))
    except ConversionError as exc:
        exc.with_context(file=label)
        raise
