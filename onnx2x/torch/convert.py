"""ONNX -> torch.fx.GraphModule: the public entry point of the PyTorch converter."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Optional

import onnx
import torch
import torch.fx as fx

from common import ir as cir
from common.errors import ConversionError, ConversionFailure, ModelLoadError
from common.gc_pause import gc_paused
from common.metadata import CONSTANT_INITIALIZERS_KEY, json_value
from common.model_io import PathLike, as_model_proto, load_onnx
from common.simplify import RESHAPED_KEY, nothing_to_simplify
from common.simplify import simplify as run_onnxsim
from common.symbolic_shapes import fill_unknown_shapes

from . import fusion
from .attribute_reads import speed_up_attribute_reads
from .builder import GraphBuilder, channels_last_conv_weights
from .sparse import densify_sparse
from .zipmap import split_zipmaps, zip_outputs

log = logging.getLogger(__name__)


def prepare(
    model: "onnx.ModelProto | PathLike",
    *,
    simplify: bool = True,
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
    lazy: bool = False,
    trainable: bool = False,
    keep_initializers: bool = False,
) -> tuple[onnx.ModelProto, str]:
    """Load, densify sparse tensors, simplify (optionally), inline local functions and infer shapes.

    ``trainable=True``: onnx-simplifier sees no float initializer, so it folds none of them
    into another (BatchNormalization into a convolution, a reshaped weight into a constant),
    and it keeps Dropout.

    ``lazy=True`` (for a path): the weights stay in the file (:func:`common.model_io.load_onnx`);
    :func:`convert_prepared` reads each of them once, straight into the module's tensors.
    ``keep_initializers``: onnxsim never sees the float initializers, so none is folded into a
    tensor of another name (:mod:`common.simplify`); for ``fuse=False``. onnxsim is not run on a
    graph it would hand back unchanged (:func:`common.simplify.nothing_to_simplify`; the
    converter computes nodes with constant inputs itself). The ranks of values onnx's inference
    leaves without a shape come from onnxruntime's symbolic inference (:mod:`common.symbolic_shapes`).
    """
    if lazy and not isinstance(model, onnx.ModelProto):
        proto, label = load_onnx(model, lazy=True), str(model)
    else:
        proto, label = as_model_proto(model)
    given = model if isinstance(model, onnx.ModelProto) else None
    proto = densify_sparse(proto, label=label)
    proto = split_zipmaps(proto, copy=proto is given)  # before anything loads the graph into onnx-ir
    if simplify and not input_shapes and nothing_to_simplify(proto, folds_constants=True):
        log.debug("%s: nothing for onnx-simplifier to do; not run", label)
    elif simplify:
        keep = float_initializers(proto.graph) if keep_initializers else ()
        proto = run_onnxsim(proto, input_shapes, label=label, in_place=proto is not given,
                            keep_trainable=trainable, keep=keep)
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
    if proto is not given:  # ranks onnx could not follow (a Reshape to a gathered mask's Shape)
        proto = fill_unknown_shapes(proto)
    return proto, label


_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16}) | frozenset(
    getattr(onnx.TensorProto, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ")
    if hasattr(onnx.TensorProto, n))


def float_initializers(graph: onnx.GraphProto) -> set[str]:
    """Names of the graph's floating-point initializers: the weights, which become parameters."""
    return {t.name for t in graph.initializer if t.data_type in _FLOAT_TYPES}


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
    fuse: Optional[bool] = None,
    trainable: bool = False,
) -> fx.GraphModule:
    """Convert an ONNX model (proto or path) to a ``torch.fx.GraphModule``.

    ``fuse`` (default: the value of ``simplify``) folds BatchNormalization and per-channel
    Mul/Add into convolutions and fuses conv+add+relu (:mod:`onnx2x.torch.fusion`); without it
    every float initializer stays a parameter of the same name and value: onnxsim does not fold
    them, and what the graph computes from one (a Reshape of a PReLU slope, slices of an RNN
    vector) is computed in the forward from the parameter (:mod:`onnx2x.torch.builder`).

    The module's forward takes the ONNX graph inputs in order and returns one tensor, or a tuple
    when the graph has several outputs (string tensors are numpy object arrays, and a ZipMap
    output is onnxruntime's list of one {label: probability} dict per row). ``gm.onnx_input_names``, ``gm.onnx_output_names``,
    ``gm.onnx_param_names`` (attribute -> initializer) and ``gm.onnx_value_to_fx`` (ONNX tensor
    name -> fx node name) tie the module back to the ONNX graph. ``gm.onnx_param_reshaped``
    (initializer -> shape) and ``gm.onnx_param_permuted`` (initializer -> dims) list the
    parameters stored reshaped or transposed (a PReLU slope's folded Reshape): the initializer's
    value is ``param.permute(dims).reshape(shape)`` (:func:`onnx2x.torch.naming.onnx_initializer`).

    ``trainable=True`` converts for fine-tuning instead of fast inference: every float
    initializer is a parameter that requires grad, and nothing is folded into anything (no
    fusion; neither onnx-simplifier nor the converter computes a new tensor from a weight).
    BatchNormalization keeps its mean and variance as buffers (named after their initializers)
    that the batch statistics update in ``train()`` with the node's momentum (ONNX
    ``momentum`` m is PyTorch's ``1 - m``; the variance that updates them is the population
    one, as in ONNX and MXNet) and that normalize in ``eval()``; Dropout drops at the node's
    ratio in ``train()`` and is the identity in ``eval()``. Initializers that the model's
    metadata lists as an exporter's constants (``x2onnx mxnet`` lists MXNet's scalar operands
    and the unit gamma of ``fix_gamma=True``: :mod:`common.metadata`) stay constant buffers.
    The module comes back in ``eval()`` mode, with ``gm.onnx2x_trainable = True``. Statistics
    that an exporter merged with other tensors (equal initializers) get private copies; a
    parameter that several nodes read stays one tied tensor, with a warning naming it.
    """
    if trainable and fuse:
        raise ValueError("fuse=True folds weights into one another; a trainable conversion keeps each of them")
    fuse = bool(simplify if fuse is None else fuse) and not trainable
    with gc_paused():
        proto, label = prepare(model, simplify=simplify, input_shapes=input_shapes, lazy=True,
                               trainable=trainable, keep_initializers=not fuse)
        box = [proto]  # hand the only reference over: the proto is freed once the weights are tensors
        del proto
        return _convert_owned(box, label, fuse=fuse, trainable=trainable)


def convert_prepared(proto: onnx.ModelProto, label: str = "", *, fuse: bool = True,
                     trainable: bool = False, generate_code: bool = True) -> fx.GraphModule:
    """Convert a model that :func:`prepare` already processed (``fuse``, ``trainable``: see
    :func:`convert`; ``trainable`` implies no fusion, and wants ``prepare(trainable=True)``).

    ``generate_code=False``: the module's ``forward`` is not generated, so it cannot run until
    ``gm.recompile()``; for a caller that only writes it (:func:`onnx2x.torch.artifact.write`
    generates the source from the graph itself). Code generation is 3-8% of a conversion."""
    with gc_paused():
        return _convert_owned([proto], label, fuse=fuse and not trainable, trainable=trainable,
                              generate_code=generate_code)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run conversion-time tensor work on one intra-op thread.

    Why: that work is many small, memory-bound ops on weights (folding, relayout, constant
    shape arithmetic); waking a thread pool for each costs more than the op, and on a busy
    machine far more (a 600 KB in-place multiply: 0.02 ms on one thread, 25 ms on two measured
    with other processes on the cores).
    """
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def _reshaped_upstream(gm: fx.GraphModule, model: Any) -> None:
    """Add to ``gm.onnx_param_reshaped`` the initializers that onnxsim stored reshaped (this
    conversion's or an earlier one's, :data:`common.simplify.RESHAPED_KEY`): their shape there
    is the source's, so it wins over the builder's."""
    shapes = json_value(model.metadata_props, RESHAPED_KEY)
    if not isinstance(shapes, dict):
        return
    stored = set(gm.onnx_param_names.values())
    for name, dims in shapes.items():
        if name in stored:
            gm.onnx_param_reshaped[name] = tuple(int(d) for d in dims)


def _convert_owned(box: list, label: str, *, fuse: bool, trainable: bool = False,
                   generate_code: bool = True) -> fx.GraphModule:
    """Convert ``box[0]`` (a prepared proto), dropping this function's references to it early."""
    with _one_thread():
        gm = _convert_on_this_thread(box, label, fuse=fuse, trainable=trainable)
    if generate_code:
        gm.recompile()  # the only code generation (``finish`` left ``forward`` to this point)
        speed_up_attribute_reads(gm)
    gm.onnx2x_trainable = trainable
    if trainable:
        gm.eval()  # like a loaded artifact; train() switches statistics updates and dropout on
    return gm


def _warn_tied(gm: fx.GraphModule, graph, label: str) -> None:
    """Say which parameters several nodes read: they train as one (tied) tensor.

    Why: ties may be the model's own (shared embeddings) or an exporter's doing (torch.onnx.export
    in eval mode merges equal initializers, such as the weights of freshly initialized
    BatchNorm layers); only the user can tell, and fine-tuning differs between the two.
    """
    params = {gm.onnx_param_names.get(name) for name, _ in gm.named_parameters(remove_duplicate=False)}
    tied = sorted(v.name for v in graph.initializers.values() if v.name in params and len(
        [u for u in v.uses() if not (u.node.op_type == "BatchNormalization" and u.idx in (3, 4))]) > 1)
    if tied:
        log.warning("%s: %d parameter(s) read by several nodes train as one tensor each: %s%s", label or "model",
                    len(tied), ", ".join(tied[:5]), " ..." if len(tied) > 5 else "")


def _convert_on_this_thread(box: list, label: str, *, fuse: bool, trainable: bool = False) -> fx.GraphModule:
    model = cir.from_proto(box.pop(), file=label)
    opsets = {("" if d == "ai.onnx" else d): int(v) for d, v in model.opset_imports.items()}
    opsets.setdefault("", 1)
    constants = (json_value(model.metadata_props, CONSTANT_INITIALIZERS_KEY) or ()) if trainable else ()
    builder = GraphBuilder(opsets, file=label, trainable=trainable, keep_initializers=not fuse, constants=constants)
    try:
        builder.convert_graph(model.graph)
        gm = builder.finish(list(model.graph.outputs), channels_last=False, generate_code=False)
        zip_outputs(gm, model.metadata_props)
        _reshaped_upstream(gm, model)
        if trainable:
            _warn_tied(gm, model.graph, label)
        info = fusion.value_info(gm, model.graph) if fuse else {}
    except ConversionError as exc:
        exc.with_context(file=label)
        raise
    # Every weight is a tensor of ``gm`` now: drop the builder's and the IR's references (the
    # proto goes with them unless the caller keeps it) before the passes below replace weights,
    # so that a replaced weight is freed at once and the weights are held once.
    builder.release_tensors()
    del builder, model
    try:
        if fuse:
            fusion.fuse(gm, info)  # also lays out convolution weights
        else:
            channels_last_conv_weights(gm, gm.graph)
    except Exception as exc:  # a bug in an optimization pass: name it, as converters' errors are
        raise ConversionFailure(f"fusion pass failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                                file=label or None) from exc
    return gm
