"""onnx-simplifier as a first pass, never fatal: on any failure the original model is used.

onnxsim only ever sees the model's *skeleton*: every initializer larger than
:data:`LARGE_INITIALIZER_BYTES` is replaced by a graph input of the same name, type and shape.
Why: onnxsim serializes and parses the whole model several times (5-10 copies of the weights at
peak, 10-25x the time of ``onnx.load`` on vgg19); the graph structure it simplifies (shape
arithmetic, constant subgraphs, dead code) depends only on the small tensors. The weights are
attached back afterwards, without copying their bytes when the model is ours to change. What
is lost, onnxsim's folding of BatchNormalization into Conv, :mod:`onnx2x.torch.fusion` does.
"""
from __future__ import annotations

import logging
from typing import Optional

import onnx

from common.model_io import copy_fields, tensor_nbytes

log = logging.getLogger(__name__)

LARGE_INITIALIZER_BYTES = 1024  # shape tensors and axes, which constant folding needs, are smaller


def _interface(model: onnx.ModelProto, hidden: frozenset = frozenset()) -> tuple[list[str], list[str]]:
    inits = {t.name for t in model.graph.initializer}
    return ([i.name for i in model.graph.input if i.name not in inits and i.name not in hidden],
            [o.name for o in model.graph.output])


def _is_large(t: onnx.TensorProto) -> bool:
    """Large enough to keep away from onnxsim; strings and unknown types are left to it."""
    return t.data_location != onnx.TensorProto.EXTERNAL and (tensor_nbytes(t) or 0) > LARGE_INITIALIZER_BYTES


def skeleton(model: onnx.ModelProto) -> tuple[onnx.ModelProto, frozenset]:
    """A copy of ``model`` whose large initializers are graph inputs; returns it and their names."""
    out = onnx.ModelProto()
    copy_fields(out, model, ("graph",))
    copy_fields(out.graph, model.graph, ("initializer",))
    declared = {i.name for i in model.graph.input}
    large = []
    for t in model.graph.initializer:
        if not _is_large(t):
            out.graph.initializer.append(t)
            continue
        large.append(t.name)
        if t.name not in declared:  # IR < 4 models list initializers as inputs already
            out.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return out, frozenset(large)


def attach_weights(simplified: onnx.ModelProto, original: onnx.ModelProto, large: frozenset,
                   *, in_place: bool) -> onnx.ModelProto:
    """``simplified`` with the original large initializers it still reads put back.

    ``in_place=True`` rewrites ``original`` around its own initializers (no weight bytes are
    copied); otherwise a new model gets a copy of them.
    """
    declared = {i.name for i in original.graph.input}
    used = _referenced(simplified.graph) & large
    inputs = [i for i in simplified.graph.input if i.name not in large or i.name in declared]
    if in_place:
        out = original
        graph = out.graph
        for k in range(len(graph.initializer) - 1, -1, -1):
            if graph.initializer[k].name not in used:
                del graph.initializer[k]
    else:
        out = onnx.ModelProto()
        graph = out.graph
        graph.initializer.extend(t for t in original.graph.initializer if t.name in used)
    copy_fields(out, simplified, ("graph",))
    copy_fields(graph, simplified.graph, ("initializer", "input"))
    graph.initializer.extend(t for t in simplified.graph.initializer if t.name not in large)
    del graph.input[:]
    graph.input.extend(inputs)
    return out


def _referenced(graph: onnx.GraphProto) -> set[str]:
    """Every name a node (also inside subgraphs) or a graph output of ``graph`` reads."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= _referenced(sub)
    return names


def simplify(
    model: onnx.ModelProto,
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
    *,
    label: str = "",
    in_place: bool = False,
) -> onnx.ModelProto:
    """Return the onnxsim-simplified model, or ``model`` itself with a one-line warning.

    ``in_place=True`` lets the result reuse ``model``'s initializers (``model`` is then changed,
    or returned unchanged when simplification fails).
    """
    try:
        import onnxsim
    except ImportError:
        log.warning("%s: onnxsim is not installed; converting the model as it is", label or "model")
        return model
    kwargs = {}
    if input_shapes:
        kwargs["overwrite_input_shapes"] = {k: list(v) for k, v in input_shapes.items()}
    small, large = skeleton(model)
    try:
        simplified, ok = onnxsim.simplify(small, check_n=0, **kwargs)
    except Exception as exc:  # onnxsim raises anything from its C++ core
        log.warning("%s: onnxsim failed (%s); converting the original model", label or "model",
                    " ".join(str(exc).split())[:200])
        return model
    if not ok:
        log.warning("%s: onnxsim could not validate its result; converting the original model", label or "model")
        return model
    if _interface(simplified, large) != _interface(model):
        log.warning("%s: onnxsim would change the model's inputs or outputs; converting the original model",
                    label or "model")
        return model
    missing = {i.name for i in simplified.graph.input} & large
    if any(t.name in missing for t in simplified.graph.initializer):
        log.warning("%s: onnxsim gave a weight two definitions; converting the original model", label or "model")
        return model
    return attach_weights(simplified, model, large, in_place=in_place)
