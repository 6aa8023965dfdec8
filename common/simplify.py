"""onnx-simplifier on a model's skeleton, never fatal: on any failure the original model is used.

Both converters run it: ``onnx2x torch`` before conversion, ``x2onnx mxnet`` after export.
onnxsim only ever sees the model's *skeleton*: initializers larger than
:data:`LARGE_INITIALIZER_BYTES` become graph inputs of the same name, type and shape. Why:
onnxsim serializes and parses the whole model several times (5-10 copies of the weights at
peak, 10-25x the time of ``onnx.load`` on vgg19); the graph structure it simplifies (shape
arithmetic, constant subgraphs, dead code) depends only on the small tensors. The weights are
attached back afterwards, without copying their bytes when the model is ours to change.
``keep_foldable`` leaves visible the large initializers that a constant subgraph reads (every
input of some reader is a constant: MXNet's RNN exports slice one flat parameter vector), so
those still fold. What is lost, onnxsim's folding of BatchNormalization into Conv, happens at
load in runtimes and in :mod:`onnx2x.torch.fusion`.
``keep`` names initializers onnxsim must never see, whatever their size (a converter's
parameters): onnxsim would fold a constant computation on them (the Reshape of a PReLU slope,
the slicing of an RNN parameter vector) into a new tensor of a new name (``_v_34``), and the
parameter's name would be gone from the model. Kept away, they stay initializers of their own
name and value, and the computation stays in the graph (runtimes fold it at load). Where onnxsim
did fold a float initializer into a pure reshape of it (same bytes, new shape and name), the new
initializer takes the old name back and ``metadata_props[RESHAPED_KEY]`` (JSON ``{name: dims}``)
records the shape it had, so that ``value.reshape(dims)`` recovers the original tensor.
"""
from __future__ import annotations

import functools
import heapq
import inspect
import json
import logging
from collections import Counter
from typing import Callable, Collection, Optional

import onnx

from common.lazy_import import deferring
from common.native_output import captured_native_output
from common.model_io import copy_fields, tensor_nbytes

log = logging.getLogger(__name__)

RESHAPED_KEY = "simplify.reshaped_initializers"
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})
LARGE_INITIALIZER_BYTES = 1024  # shape tensors and axes, which constant folding needs, are smaller


def _interface(model: onnx.ModelProto, hidden: frozenset = frozenset()) -> tuple[list[str], list[str]]:
    inits = {t.name for t in model.graph.initializer}
    return ([i.name for i in model.graph.input if i.name not in inits and i.name not in hidden],
            [o.name for o in model.graph.output])


def _is_large(t: onnx.TensorProto) -> bool:
    """Kept away from onnxsim: large tensors, and every tensor whose bytes are in a file (a lazily
    loaded model's weights, :mod:`common.weight_refs`: onnxsim would read them all, or fail on
    their absolute locations). Small strings and unknown types are left to it."""
    return t.data_location == onnx.TensorProto.EXTERNAL or (tensor_nbytes(t) or 0) > LARGE_INITIALIZER_BYTES


NONDETERMINISTIC_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                                  "Multinomial", "Bernoulli", "Dropout"})


def constant_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes whose outputs follow from initializers and Constants alone (what constant folding
    evaluates): no graph input upstream, no random op, no subgraph."""
    graph_inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    constant = {t.name for t in graph.initializer}
    found = []
    for node in graph.node:  # topological order
        inputs = [i for i in node.input if i]
        if all(i in constant for i in inputs) and not graph_inputs.intersection(inputs) \
                and node.op_type not in NONDETERMINISTIC_OPS \
                and not any(a.HasField("g") or a.graphs for a in node.attribute):
            constant.update(o for o in node.output if o)
            found.append(node)
    return found


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Every name the node's subgraphs read, at any depth: a superset of what they take from
    the enclosing graph (names are unique across scopes in ONNX)."""
    names: set[str] = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in sub.node:
                names.update(i for i in inner.input if i)
                names |= _subgraph_reads(inner)
    return names


def sort_nodes(graph: onnx.GraphProto) -> bool:
    """Put ``graph.node`` in topological order, in place, keeping the given order wherever it is
    already right; True when it was out of order.

    Why: ONNX requires that order and onnx-simplifier refuses a graph without it ("Nodes in a graph
    must be topologically sorted"), but tools write such graphs and onnxruntime runs them
    (the float16 conversion of onnxruntime.transformers appends the input casts after their readers).
    A graph with a cycle is left as it is, for the converter to name the cycle.
    """
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    needs: list[set[int]] = []
    for i, node in enumerate(graph.node):
        reads = {name for name in node.input if name} | _subgraph_reads(node)
        needs.append({producer[name] for name in reads if name in producer and producer[name] != i})
    if all(j < i for i, before in enumerate(needs) for j in before):
        return False
    waiting = [len(before) for before in needs]
    readers: list[list[int]] = [[] for _ in needs]
    for i, before in enumerate(needs):
        for j in before:
            readers[j].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in readers[i]:
            waiting[k] -= 1
            if waiting[k] == 0:
                heapq.heappush(ready, k)
    if len(order) != len(needs):
        return False  # a cycle
    nodes = [onnx.NodeProto() for _ in order]
    for copy, i in zip(nodes, order):
        copy.CopyFrom(graph.node[i])
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def _read_by_constant_subgraphs(graph: onnx.GraphProto) -> set[str]:
    """Initializers some node reads together with constants only (a node onnxsim can fold)."""
    return {i for node in constant_nodes(graph) for i in node.input if i}


_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})


def skeleton(model: onnx.ModelProto, *, keep_foldable: bool = False, hide_weights: bool = False,
             keep: Collection[str] = ()) -> tuple[onnx.ModelProto, frozenset]:
    """A copy of ``model`` whose large initializers are graph inputs; returns it and their names.
    With ``keep_foldable``, initializers read by constant subgraphs stay initializers; with
    ``hide_weights``, every float initializer is an input (onnxsim can fold none of them); those
    named in ``keep`` are graph inputs whatever their size."""
    out = onnx.ModelProto()
    copy_fields(out, model, ("graph",))
    copy_fields(out.graph, model.graph, ("initializer",))
    declared = {i.name for i in model.graph.input}
    visible = _read_by_constant_subgraphs(model.graph) if keep_foldable else set()
    large = []
    for t in model.graph.initializer:
        hidden = (t.name in keep or (hide_weights and t.data_type in _FLOAT_TYPES)
                  or (_is_large(t) and not (t.name in visible and t.data_location != onnx.TensorProto.EXTERNAL)))
        if not hidden:
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


def _float_bytes(t: onnx.TensorProto) -> Optional[tuple[int, bytes]]:
    if t.data_type not in _FLOAT_TYPES or t.data_location == onnx.TensorProto.EXTERNAL:
        return None
    from onnx import numpy_helper

    return t.data_type, numpy_helper.to_array(t).tobytes()


def restore_reshaped_names(before: onnx.GraphProto, after: onnx.GraphProto) -> dict[str, list[int]]:
    """Rename each initializer of ``after`` that onnxsim made by reshaping a float initializer of
    ``before`` (now gone) back to that name; returns ``{name: shape in before}`` for those.

    Only one-to-one matches by content: two gone initializers of equal bytes (zero biases) leave
    their reshaped copies alone, as the name could be the wrong one.
    """
    kept = {t.name for t in after.initializer}
    used = _referenced(after) | {o for n in after.node for o in n.output} | {i.name for i in after.input}
    gone: dict[tuple[int, bytes], list[onnx.TensorProto]] = {}
    for t in before.initializer:
        if t.name not in kept and t.name not in used:
            key = _float_bytes(t)
            if key is not None:
                gone.setdefault(key, []).append(t)
    if not gone:
        return {}
    before_names = {t.name for t in before.initializer}
    made: dict[tuple[int, bytes], list[onnx.TensorProto]] = {}
    for t in after.initializer:
        if t.name not in before_names:
            key = _float_bytes(t)
            if key in gone:
                made.setdefault(key, []).append(t)
    renamed, names = {}, {}
    for key, news in made.items():
        if len(news) != 1 or len(gone[key]) != 1:
            continue
        old, new = gone[key][0], news[0]
        names[new.name] = old.name
        new.name = old.name
        renamed[old.name] = list(old.dims)
    _rename_values(after, names)
    return renamed


def _rename_values(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    """Every read of a key of ``names`` in ``graph`` (and its subgraphs) reads its value (one
    walk for all of them: a walk per name is quadratic on big graphs)."""
    if not names:
        return
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in names:
                node.input[k] = names[name]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_values(sub, names)
    for seq in (graph.output, graph.value_info):
        for v in seq:
            if v.name in names:
                v.name = names[v.name]


def _record_reshaped(model: onnx.ModelProto, renamed: dict[str, list[int]]) -> None:
    """Merge ``renamed`` into the model's :data:`RESHAPED_KEY` entry (an earlier shape wins)."""
    if not renamed:
        return
    for prop in model.metadata_props:
        if prop.key == RESHAPED_KEY:
            merged = {**renamed, **json.loads(prop.value)}
            prop.value = json.dumps(merged, sort_keys=True)
            return
    model.metadata_props.add(key=RESHAPED_KEY, value=json.dumps(renamed, sort_keys=True))


def _referenced(graph: onnx.GraphProto) -> set[str]:
    """Every name a node (also inside subgraphs) or a graph output of ``graph`` reads."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= _referenced(sub)
    return names


# Ops that no onnx-simplifier pass rewrites when an input is computed (not constant), the
# conditions below aside: graph-level folding needs constant inputs or shapes (Shape, Size,
# ConstantOfShape, Expand, Slice and control flow are absent), and its no-op eliminations and
# fusions concern other ops (Identity, Pad, Cast, Split, Squeeze chains, MatMul+Add).
_PLAIN_OPS = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN",
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
    "Softsign", "Erf", "Gelu", "Clip", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs",
    "Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Pow",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
    "Gemm", "MatMul", "Softmax", "LogSoftmax", "Concat", "Flatten", "Reshape", "Transpose", "Unsqueeze",
    "Dropout", "Upsample", "Resize", "DepthToSpace", "SpaceToDepth", "LSTM", "GRU", "RNN",
})


def nothing_to_simplify(model: onnx.ModelProto, *, folds_constants: bool) -> bool:
    """Whether onnx-simplifier would leave ``model`` as it is, judged without running it.

    Why: onnxsim takes 20-40% of converting a plain convolutional network (ShuffleNet, ResNet,
    Inception) only to hand the same graph back. True only for graphs of :data:`_PLAIN_OPS`
    (standard domain, no subgraph) without anything its passes remove or rewrite: an unused
    initializer, a node nothing reads, an identity or consecutive Transpose, a Concat of one
    input or of a Concat on the same axis, and, unless
    ``folds_constants`` (the caller computes nodes with constant inputs itself, as the PyTorch
    converter does at conversion), a node whose inputs are all initializers or Constants.
    """
    graph = model.graph
    if len(model.functions) or any(i.domain not in _STANDARD_DOMAINS for i in model.opset_import):
        return False
    if any(n.op_type not in _PLAIN_OPS or n.domain not in ("", "ai.onnx") for n in graph.node):
        return False
    producer = {out: node for node in graph.node for out in node.output}
    readers = Counter(name for node in graph.node for name in node.input)
    used = set(readers) | {o.name for o in graph.output}
    if any(t.name not in used for t in graph.initializer):  # onnxsim drops unused initializers
        return False
    constants = {t.name for t in graph.initializer}

    def axis_of(node: onnx.NodeProto) -> Optional[int]:
        return next((a.i for a in node.attribute if a.name == "axis"), None)

    for node in graph.node:
        if not any(out in used for out in node.output):  # and dead nodes
            return False
        inputs = [n for n in node.input if n]
        if not folds_constants and inputs and all(n in constants for n in inputs):
            return False
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            source = producer.get(inputs[0]) if inputs else None
            if (perm is not None and perm == list(range(len(perm)))) or (
                    source is not None and source.op_type == "Transpose"):
                return False
        elif node.op_type == "Concat":
            if len(inputs) < 2 or any(
                    (p := producer.get(n)) is not None and p.op_type == "Concat" and readers[n] == 1
                    and axis_of(p) == axis_of(node) for n in inputs):
                return False
    return True


def simplify(
    model: onnx.ModelProto,
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
    *,
    label: str = "",
    in_place: bool = False,
    keep_foldable: bool = False,
    skip_fuse_bn: bool = False,
    keep_trainable: bool = False,
    keep: Collection[str] = (),
) -> onnx.ModelProto:
    """Return the onnxsim-simplified model, or ``model`` itself with a one-line warning.

    ``in_place=True`` lets the result reuse ``model``'s initializers (``model`` is then changed,
    or returned unchanged when simplification fails). ``skip_fuse_bn`` keeps onnxsim from folding
    BatchNormalization into a Conv whose weights it can see (small ones). ``keep_trainable``
    (trainable conversion) shows onnxsim no float initializer at all, so that none is folded
    into another and every weight stays the parameter of its name, and keeps BatchNormalization
    and Dropout nodes (which onnxsim removes as no-ops of inference). ``keep``: initializers
    onnxsim never sees, so that they keep their name and value (see the module's docstring).
    """
    return _simplify(model, input_shapes, label=label, in_place=in_place, keep_foldable=keep_foldable,
                     skip_fuse_bn=skip_fuse_bn, keep_trainable=keep_trainable, keep=keep)[0]


def simplify_tracking_names(model: onnx.ModelProto, *, label: str = "", in_place: bool = False,
                            keep_foldable: bool = False, skip_fuse_bn: bool = False,
                            keep: Collection[str] = ()) -> tuple[onnx.ModelProto, Optional[set[str]]]:
    """:func:`simplify`, and the names of the result that hold the same value as in ``model``
    (:func:`common.verify.survivors.surviving_tensors`; None when ``model`` came back unchanged).
    Judged on the skeletons, so no weight is compared, and before ``in_place`` reuses ``model``."""
    return _simplify(model, None, label=label, in_place=in_place, keep_foldable=keep_foldable,
                     skip_fuse_bn=skip_fuse_bn, keep=keep, track=True)


_STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def _uses_other_domains(model: onnx.ModelProto) -> bool:
    """Whether a node (or a model-local function's node) is outside onnx's own domains: only then
    can it need a schema registered in Python (``onnx.defs.register_schema``) that onnxsim, with
    its own copy of onnx's registry, lacks. Why ask: onnxsim copies those schemas over on every
    call unless told not to, 6 ms each time (a fifth of simplifying SqueezeNet)."""
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    return any(n.domain not in _STANDARD_DOMAINS or any(a.HasField("g") or a.graphs for a in n.attribute)
               for n in nodes)


@functools.lru_cache(maxsize=None)
def _takes_schema_flag(fn: Callable) -> bool:
    """onnxsim >= 0.8 has ``import_custom_schemas``; older versions refuse unknown arguments."""
    try:
        return "import_custom_schemas" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _simplify(model: onnx.ModelProto, input_shapes: Optional[dict[str, tuple[int, ...]]], *, label: str,
              in_place: bool, keep_foldable: bool, skip_fuse_bn: bool, keep: Collection[str] = (),
              track: bool = False, keep_trainable: bool = False) -> tuple[onnx.ModelProto, Optional[set[str]]]:
    label = label or "model"
    try:
        with deferring(("torch",)):  # onnxsim's package imports torch, which simplify never uses
            import onnxsim
    except ImportError:
        log.warning("%s: onnxsim is not installed; using the model unsimplified", label)
        return model, None
    kwargs: dict = {"skip_fuse_bn": True} if skip_fuse_bn or keep_trainable else {}
    if keep_trainable:
        kwargs["skipped_optimizers"] = ["eliminate_nop_dropout"]
    if input_shapes:
        kwargs["overwrite_input_shapes"] = {k: list(v) for k, v in input_shapes.items()}
    small, large = skeleton(model, keep_foldable=keep_foldable, hide_weights=keep_trainable, keep=frozenset(keep))
    if sort_nodes(small.graph):
        log.info("%s: nodes are not in topological order (as ONNX requires); sorted for onnxsim", label)
    if _takes_schema_flag(onnxsim.simplify) and not _uses_other_domains(small):
        kwargs["import_custom_schemas"] = False
    printed: list[str] = []
    try:
        with captured_native_output(printed):  # a line per node it cannot fold: the log's, at DEBUG
            simplified, ok = onnxsim.simplify(small, check_n=0, **kwargs)
    except Exception as exc:  # onnxsim raises anything from its C++ core
        log.warning("%s: onnxsim failed (%s); using the model unsimplified", label, " ".join(str(exc).split())[:200])
        return model, None
    finally:
        lines = "".join(printed).splitlines()
        if lines:
            log.debug("%s: onnxsim printed %d line(s):\n%s", label, len(lines), "\n".join(lines[:50]))
    if not ok:
        log.warning("%s: onnxsim could not validate its result; using the model unsimplified", label)
        return model, None
    if _interface(simplified, large) != _interface(model):
        log.warning("%s: onnxsim would change the model's inputs or outputs; using the model unsimplified", label)
        return model, None
    missing = {i.name for i in simplified.graph.input} & large
    if any(t.name in missing for t in simplified.graph.initializer):
        log.warning("%s: onnxsim gave a weight two definitions; using the model unsimplified", label)
        return model, None
    survivors = None
    if track:
        from common.verify.survivors import surviving_tensors

        survivors = surviving_tensors(small, simplified)
    renamed = restore_reshaped_names(small.graph, simplified.graph)
    if survivors is not None:
        survivors -= set(renamed)  # an old name for another shape
    del small
    out = attach_weights(simplified, model, large, in_place=in_place)
    _record_reshaped(out, renamed)
    return out, survivors
