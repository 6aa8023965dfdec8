"""Build the ONNX graph with outputs wired by index, SSA names, no label inputs, per-node shapes.

MXNet's ``MXNetGraph.create_onnx_graph_proto``:

- wires consumers to a tensor name guessed from the producer's *node* name (``name`` or
  ``name + str(i)``, else the name of the last node a translation emitted), so an op with
  several outputs, or a translation naming its outputs otherwise, feeds the wrong tensor;
- accepts tensor names a translation emits twice (det4: FullyConnected ``fc4`` creates a
  constant ``fc4_1`` while a later node is called ``fc4_1``), which is not SSA;
- skips the label argument of a loss head without a placeholder in its output table, so every
  later node reads the wrong entry (det2/det3: ``IndexError``), and only knows ``<last>_label``
  (here: any variable, and any op, whose every use ends in a label slot: ``common.mxnet_heads``);
- lists every weight as a graph input, sorts graph outputs alphabetically instead of keeping
  MXNet's order, checks the graph against onnx's newest opset, and gives translations no shapes
  (PReLU cannot reshape its slope for the input's rank).

The replacement keeps MXNet's translation interface (same ``convert_layer`` calls, same
``outputs_lookup``), and adds ``mx_shapes``/``mx_dtypes``/``node_index`` to the keyword arguments
(see the package docstring). It records ``tensor_map``: MXNet internal output names
(``sym.get_internals()``) -> ONNX tensor names.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, ValueInfoProto

from common.errors import ConversionError, ConversionFailure, ShapeError, UnsupportedOpError, one_line
from common.mxnet_heads import label_inputs, training_only_nodes

from . import opset_stamp
from ._patching import Patch
from .raw_weights import LazyWeights, fill_tensor

log = logging.getLogger(__name__)

BATCH_DIM = "batch"
_LARGE_TENSOR = 256  # elements; bigger initializers are stubbed out for the structural check

_patch = Patch()


# ----------------------------------------------------------------------------- helpers on names

def onnx_output_name(mx_name: str) -> str:
    """The graph-output name MXNet's exporter gives an MXNet output (``prob1_output`` -> ``prob1``)."""
    if mx_name.endswith("_state_output"):
        return mx_name[: -len("_state_output")] + "1"
    if mx_name.endswith("_statecell_output"):
        return mx_name[: -len("_statecell_output")] + "2"
    if mx_name.endswith("_output"):
        return mx_name[: -len("_output")]
    match = re.search(r"_output([0-9]+)$", mx_name)
    if match:
        return mx_name[: match.start()] + match.group(1)
    return mx_name


def _strip_prefix(name: str) -> str:
    return name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name


class _Names:
    """Every tensor name in the graph so far, and fresh names that keep it SSA."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def fresh(self, base: str) -> str:
        k = 1
        while f"{base}__{k}" in self.used:
            k += 1
        return f"{base}__{k}"

    def claim(self, name: str) -> str:
        """``name`` if free, else a fresh variant; either way it is now taken."""
        out = name if name not in self.used else self.fresh(name)
        self.used.add(out)
        return out


class InitializerList(list):
    """MXNet's ``initializer`` list, bound to the output graph: weights are created in place."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        super().__init__()
        self.graph = graph
        self.placed: set[int] = set()

    def add_array(self, name: str, array: np.ndarray) -> TensorProto:
        tensor = fill_tensor(self.graph.initializer.add(), name, array)
        self.placed.add(id(tensor))
        self.append(tensor)
        return tensor


class _NodeOutput:
    """One entry of MXNet's ``outputs_lookup`` (translations read ``.name`` and ``.dtype``)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: Any) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)


# ----------------------------------------------------------------------------- shapes and types

@dataclass
class SymbolInfo:
    """What shape and type inference tell about every tensor of a symbol."""

    nodes: list[dict]
    heads: list[list[int]]
    node_outputs: list[list[str]]          # per JSON node: its internal output names
    shapes: dict[str, tuple[int, ...]]     # internal output name -> shape
    dtypes: dict[str, np.dtype]
    output_names: list[str]                # sym.list_outputs()
    output_shapes: list[tuple[int, ...]]
    data_inputs: list[str]
    labels: list[str]
    training_only: set[int] = field(default_factory=set)  # JSON node indices that only feed labels


def _mx_error_line(exc: BaseException) -> tuple[str, Optional[str]]:
    """First meaningful line of an MXNet error and the operator it names, if any."""
    text = str(exc)
    node = None
    match = re.search(r"Error in operator ([^:\s]+)", text)
    if match:
        node = match.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("Stack trace", "["))]
    detail = next((ln for ln in lines if "Check failed" in ln or "Error in operator" in ln or "Shape" in ln),
                  lines[0] if lines else type(exc).__name__)
    return detail[:300], node


def _first_output_of(name: str, node: Optional[dict]) -> bool:
    """Whether ``name`` is the first internal output name of ``node`` (the next node in DFS order)."""
    if node is None:
        return False
    if node["op"] == "null":
        return name == node["name"]
    return name in (node["name"] + "_output", node["name"] + "_output0")


def _align_internals(nodes: Sequence[dict], names: Sequence[str]) -> list[list[str]]:
    """Per JSON node, its entries of ``get_internals().list_outputs()`` (same DFS order)."""
    out: list[list[str]] = []
    pos = 0
    for i, node in enumerate(nodes):
        mine: list[str] = []
        if node["op"] == "null":
            if pos < len(names) and names[pos] == node["name"]:
                mine.append(names[pos])
                pos += 1
        else:
            prefix = node["name"] + "_output"
            while pos < len(names) and (names[pos] == prefix or
                                        (names[pos].startswith(prefix) and names[pos][len(prefix):].isdigit())):
                mine.append(names[pos])
                pos += 1
            # named further outputs (RNN's ``_state_output``/``_statecell_output``, rrelu's ``_mask``)
            following = nodes[i + 1] if i + 1 < len(nodes) else None
            while mine and pos < len(names) and names[pos].startswith(node["name"] + "_") \
                    and not _first_output_of(names[pos], following):
                mine.append(names[pos])
                pos += 1
        out.append(mine)
    if pos != len(names) or any(not m for m in out):  # unexpected order: fall back to names
        by_name = set(names)
        out = []
        for node in nodes:
            if node["op"] == "null":
                out.append([node["name"]] if node["name"] in by_name else [])
                continue
            single = node["name"] + "_output"
            if single in by_name:
                out.append([single])
            else:
                k, mine = 0, []
                while f"{single}{k}" in by_name:
                    mine.append(f"{single}{k}")
                    k += 1
                out.append(mine)
    return out


def analyse_symbol(sym: Any, params: Mapping[str, Any], input_shapes: Mapping[str, Sequence[int]],
                   input_dtypes: Mapping[str, Any]) -> SymbolInfo:
    """Infer every internal tensor's shape and dtype at the given input shapes."""
    graph_json = json.loads(sym.tojson())
    nodes, heads = graph_json["nodes"], graph_json["heads"]
    labels = label_inputs(nodes, params, heads)
    data_inputs = [n for n in sym.list_inputs() if n not in params and n not in labels]
    missing = [n for n in data_inputs if n not in input_shapes]
    if missing:
        raise ShapeError(f"no shape for input(s) {', '.join(missing)}; give one per input "
                         f"(for example --input-shape {missing[0]}:1,3,224,224)")
    known = {n: tuple(int(d) for d in input_shapes[n]) for n in data_inputs}
    arg_names = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    known.update({n: tuple(v.shape) for n, v in params.items() if n in arg_names})
    internals = sym.get_internals()
    names = internals.list_outputs()
    try:
        _, shapes, _ = internals.infer_shape(**known)
    except Exception as exc:  # MXNetError: the shapes do not fit the network
        detail, node = _mx_error_line(exc)
        given = ", ".join(f"{n}:{','.join(map(str, input_shapes[n]))}" for n in data_inputs)
        raise ShapeError(f"input shape(s) {given} do not fit the network: {detail}", node=node) from None
    if shapes is None or any(s is None for s in shapes):
        _, shapes, _ = internals.infer_shape_partial(**known)
    types_in = {n: np.dtype(input_dtypes.get(n, np.float32)) for n in data_inputs}
    types_in.update({n: np.dtype(v.dtype) for n, v in params.items() if n in arg_names})
    try:
        _, dtypes, _ = internals.infer_type_partial(**types_in)  # labels may stay untyped
    except Exception:  # noqa: BLE001 - types are a refinement; fall back to translations' own
        dtypes = None
    shape_map = {n: tuple(s) for n, s in zip(names, shapes) if s is not None}
    dtype_map = {n: np.dtype(t) for n, t in zip(names, dtypes or []) if t is not None}
    output_names = sym.list_outputs()
    _, out_shapes, _ = sym.infer_shape_partial(**known)
    return SymbolInfo(nodes=nodes, heads=heads, node_outputs=_align_internals(nodes, names), shapes=shape_map,
                      dtypes=dtype_map, output_names=output_names,
                      output_shapes=[tuple(s) if s is not None else () for s in out_shapes],
                      data_inputs=data_inputs, labels=labels, training_only=training_only_nodes(nodes, heads))


def _batch_dims(sym: Any, params: Mapping[str, Any], static: Mapping[str, tuple[int, ...]],
                dynamic: Mapping[str, Sequence[Optional[int]]]) -> list[list[Optional[str]]]:
    """Per graph output, per dim: ``"batch"`` where it follows the input batch size, else None."""
    arg_names = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    base = {n: v.shape for n, v in params.items() if n in arg_names}

    def out_shapes(delta: int) -> list[tuple[int, ...]]:
        shapes = dict(base)
        for name, shape in static.items():
            dyn = dynamic.get(name, shape)
            shapes[name] = tuple(d + delta if dyn[i] is None else d for i, d in enumerate(shape))
        _, outs, _ = sym.infer_shape_partial(**shapes)
        return [tuple(o) if o is not None else () for o in outs]

    first, second = out_shapes(0), out_shapes(1)
    batch = next((s[0] for s in static.values() if s), None)
    marks = []
    for a, b in zip(first, second):
        dims: list[Optional[str]] = []
        for x, y in zip(a, b):
            if x == y:
                dims.append(None)
            elif batch is not None and x == batch and y == batch + 1:
                dims.append(BATCH_DIM)
            else:
                dims.append("?")
        marks.append(dims)
    return marks


# ----------------------------------------------------------------------------- the builder

def _named_dims(input_name: str, dims: Sequence[Optional[int]]) -> tuple[Any, ...]:
    """Free dimensions get names: ``batch`` for dimension 0, ``<input>_dim<i>`` for the others."""
    return tuple(d if d is not None else (BATCH_DIM if i == 0 else f"{input_name}_dim{i}")
                 for i, d in enumerate(dims))


@dataclass
class BuildResult:
    graph: onnx.GraphProto
    tensor_map: dict[str, str] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


def _rename_everywhere(nodes: Sequence[NodeProto], lookup: Sequence[Sequence[_NodeOutput]], old: str,
                       new: str) -> None:
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for entries in lookup:
        for entry in entries:
            if entry.name == old:
                entry.name = new


def _value_info(name: str, dtype: np.dtype, shape: Sequence[Optional[int]],
                symbolic: Optional[Sequence[Optional[str]]] = None) -> ValueInfoProto:
    dims: list[Any] = []
    for i, d in enumerate(shape):
        mark = symbolic[i] if symbolic is not None and i < len(symbolic) else None
        if mark == BATCH_DIM:
            dims.append(BATCH_DIM)
        elif mark == "?" or d is None:
            dims.append(None)
        else:
            dims.append(int(d))
    return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)


def _elements(tensor: TensorProto) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def _structural_check(graph: onnx.GraphProto, opset: int) -> None:
    """``onnx.checker`` on the graph with big initializers stubbed (no copy of the weights)."""
    skeleton = onnx.GraphProto()
    skeleton.name = graph.name
    skeleton.node.extend(graph.node)
    skeleton.input.extend(graph.input)
    skeleton.output.extend(graph.output)
    skeleton.value_info.extend(graph.value_info)
    for tensor in graph.initializer:
        if _elements(tensor) > _LARGE_TENSOR:  # (reading raw_data or ByteSize() would copy it)
            stub = skeleton.initializer.add()
            stub.name = tensor.name
            stub.data_type = tensor.data_type
            stub.dims.append(0)
        else:
            skeleton.initializer.append(tensor)
    try:
        opset_stamp.check_graph(skeleton, opset)
    except onnx.checker.ValidationError as exc:
        text = one_line(exc).split(": ", 1)[-1]
        spec = re.search(r"Name: (\S*) OpType: (\S+)", text)
        detail = text.split(" ==> ")[0]
        raise ConversionFailure(f"the exported graph is not valid ONNX at opset {opset}: {detail}; export at a "
                                f"lower opset (--opset {opset_stamp.DEFAULT_OPSET} is the default)",
                                node=spec.group(1) if spec else None, op_type=spec.group(2) if spec else None) from None


def build_graph(sym: Any, params: Mapping[str, Any], input_shapes: Mapping[str, Sequence[int]], *,
                input_dtypes: Optional[Mapping[str, Any]] = None, opset: int = opset_stamp.DEFAULT_OPSET,
                dynamic_input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None,
                target: Optional[onnx.GraphProto] = None, verbose: bool = False,
                check: bool = True) -> BuildResult:
    """Convert ``sym`` with MXNet's (repaired) translations into ``target`` (or a new graph).

    ``input_shapes`` maps each data input to its static export shape; ``dynamic_input_shapes``
    gives the same inputs with ``None`` where a dimension must stay free in the ONNX model.
    """
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    opset = opset_stamp.validate_opset(opset)
    params = {_strip_prefix(k): v for k, v in params.items()}
    input_dtypes = dict(input_dtypes or {})
    info = analyse_symbol(sym, params, input_shapes, input_dtypes)
    static = {n: tuple(int(d) for d in input_shapes[n]) for n in info.data_inputs}
    dynamic = {n: tuple(dynamic_input_shapes[n]) for n in (dynamic_input_shapes or {}) if n in static}
    for name, dims in dynamic.items():
        if len(dims) != len(static[name]):
            raise ShapeError(f"dynamic shape for {name} has rank {len(dims)}, the input has {len(static[name])}")

    graph = target if target is not None else onnx.GraphProto()
    graph.name = graph.name or "mxnet_converted_model"
    initializer = InitializerList(graph)
    weights = LazyWeights(params)
    names = _Names()
    lookup: list[list[_NodeOutput]] = []
    emitted: list[NodeProto] = []
    proc_nodes: list[Any] = []
    node_names: set[str] = set()
    inputs: list[ValueInfoProto] = []
    labels = set(info.labels)

    for idx, node in enumerate(info.nodes):
        op, name = node["op"], node["name"]
        if name in node_names:
            name = node["name"] = f"idx_{idx}_{name}"
        node_names.add(name)
        mx_outs = info.node_outputs[idx]
        if idx in info.training_only:  # a label, or an op computing one: never a graph tensor
            lookup.append([_NodeOutput(out, np.float32) for out in (mx_outs or [name])])
            continue
        is_input = op == "null" and name not in params
        kwargs: dict[str, Any] = dict(
            is_input=is_input, mx_graph=info.nodes, weights=weights, proc_nodes=proc_nodes,
            initializer=initializer, outputs_lookup=lookup, idx=idx, node_index=idx, opset_version=opset,
            mx_shapes=info.shapes, mx_dtypes=info.dtypes, mx_node_outputs=info.node_outputs)
        if is_input:
            dtype = np.dtype(input_dtypes.get(name, np.float32))
            kwargs["in_shape"] = _named_dims(name, dynamic.get(name, static[name]))
            kwargs["in_type"] = onnx.helper.np_dtype_to_tensor_dtype(dtype)
        if verbose:
            log.info("converting %d: %s (%s)", idx, name, op)
        before = len(initializer)
        try:
            converted = MXNetGraph.convert_layer(node, **kwargs)
        except ConversionError as exc:
            raise exc.with_context(node=name, op_type=op)
        except AttributeError as exc:
            if "No conversion function registered" in str(exc):
                raise UnsupportedOpError(op, opset, name, detail="MXNet's exporter has no translation for it") from None
            raise ConversionFailure(f"translation failed: {one_line(exc)}", node=name, op_type=op) from exc
        except Exception as exc:  # noqa: BLE001 - any translation bug becomes one line naming the node
            raise ConversionFailure(f"translation failed: {one_line(exc)}", node=name, op_type=op) from exc
        converted, dtypes = converted if isinstance(converted, tuple) else (converted, None)
        if not isinstance(converted, list):
            raise ConversionFailure("translation returned no node list", node=name, op_type=op)

        local: dict[str, str] = {}
        for tensor in initializer[before:]:
            new = names.claim(tensor.name)
            if new != tensor.name:
                local[tensor.name] = new
                tensor.name = new
        produced: dict[str, str] = {}
        last_node: Optional[NodeProto] = None
        for item in converted:
            if isinstance(item, ValueInfoProto):
                if is_input:
                    item.name = names.claim(item.name)
                    inputs.append(item)
                    produced[name] = item.name
                continue
            if not isinstance(item, NodeProto):
                raise ConversionFailure(f"translation returned a {type(item).__name__}", node=name, op_type=op)
            for i, tensor in enumerate(item.input):
                if tensor in local:
                    item.input[i] = local[tensor]
            for i, tensor in enumerate(item.output):
                if not tensor:
                    continue
                new = names.claim(tensor)
                if new != tensor:
                    local[tensor] = new
                    item.output[i] = new
                produced[tensor] = new
            if not item.name or item.name in node_names:
                item.name = item.name or (item.output[0] if item.output else name)
                while item.name in node_names:
                    item.name = names.fresh(item.name)
            node_names.add(item.name)
            emitted.append(item)
            proc_nodes.append(item)
            last_node = item

        if op == "null":
            tensor = produced.get(name, local.get(name, name))
            lookup.append([_NodeOutput(tensor, (dtypes or (info.dtypes.get(name, np.float32),))[0])])
            continue
        count = max(1, len(mx_outs))
        wanted = [name] if count == 1 else [f"{name}{i}" for i in range(count)]
        if all(w in produced for w in wanted):
            out_names = [produced[w] for w in wanted]
        elif last_node is not None and len([o for o in last_node.output if o]) >= count:
            out_names = [o for o in last_node.output if o][:count]
        elif last_node is None and node.get("inputs"):
            src = node["inputs"][0]
            out_names = [lookup[src[0]][src[1]].name]  # translation chose to pass its input through
        else:
            raise ConversionFailure(f"translation produced {len(produced)} tensors, MXNet has {count} outputs",
                                    node=name, op_type=op)
        entries = []
        for i, tensor in enumerate(out_names):
            mx_name = mx_outs[i] if i < len(mx_outs) else None
            dtype = info.dtypes.get(mx_name) if mx_name else None
            if dtype is None and dtypes is not None and i < len(dtypes):
                dtype = dtypes[i]
            if dtype is None:
                src = node["inputs"][0] if node.get("inputs") else None
                dtype = lookup[src[0]][src[1]].dtype if src else np.float32
            entries.append(_NodeOutput(tensor, dtype))
        lookup.append(entries)

    # graph outputs: MXNet's order and names
    symbolic = _batch_dims(sym, params, static, dynamic) if dynamic else None
    graph_inputs = {vi.name for vi in inputs}
    initializer_names = {t.name for t in initializer}
    outputs: list[ValueInfoProto] = []
    taken_outputs: set[str] = set()
    for k, head in enumerate(info.heads):
        entry = lookup[head[0]][head[1]]
        wanted = onnx_output_name(info.output_names[k]) if k < len(info.output_names) else entry.name
        if wanted in taken_outputs:
            wanted = names.fresh(wanted)
        producer_owned = entry.name not in graph_inputs and entry.name not in initializer_names \
            and entry.name not in taken_outputs
        if entry.name != wanted:
            if wanted in names.used:  # another tensor holds the name MXNet gives this output
                other = names.fresh(wanted)
                names.used.add(other)
                _rename_everywhere(emitted, lookup, wanted, other)
                for tensor in initializer:
                    if tensor.name == wanted:
                        tensor.name = other
            if producer_owned:
                _rename_everywhere(emitted, lookup, entry.name, wanted)
            else:
                emitted.append(onnx.helper.make_node("Identity", [entry.name], [wanted], name=f"{wanted}_identity"))
            names.used.add(wanted)
        taken_outputs.add(wanted)
        dtype = entry.dtype
        shape = info.output_shapes[k] if k < len(info.output_shapes) else ()
        outputs.append(_value_info(wanted, dtype, shape, symbolic[k] if symbolic else None))

    # MXNet internal names -> ONNX tensor names (for locating the first divergent node)
    tensor_map: dict[str, str] = {}
    for idx, mx_outs in enumerate(info.node_outputs):
        if idx in info.training_only:
            continue
        for i, mx_name in enumerate(mx_outs):
            if i < len(lookup[idx]):
                tensor_map[mx_name] = lookup[idx][i].name

    graph.node.extend(emitted)
    graph.input.extend(inputs)
    graph.output.extend(outputs)
    for tensor in initializer:
        if id(tensor) not in initializer.placed:
            graph.initializer.append(tensor)
    initializer.clear()
    if check:
        _structural_check(graph, opset)
    return BuildResult(graph=graph, tensor_map=tensor_map, input_names=[vi.name for vi in inputs],
                       output_names=[vi.name for vi in outputs], labels=sorted(labels))


# ----------------------------------------------------------------------------- MXNet's interface

def create_onnx_graph_proto(self: Any, sym: Any, params: Mapping[str, Any], in_shapes: Sequence[Sequence[int]],
                            in_types: Sequence[int], verbose: bool = False, opset_version: Optional[int] = None,
                            dynamic: bool = False, dynamic_input_shapes: Optional[Sequence] = None,
                            target: Optional[onnx.GraphProto] = None) -> onnx.GraphProto:
    """Drop-in for ``MXNetGraph.create_onnx_graph_proto`` (``in_shapes`` in ``list_inputs`` order).

    The result's tensor map is left on ``self.tensor_map``.
    """
    params = {_strip_prefix(k): v for k, v in params.items()}
    graph_json = json.loads(sym.tojson())
    labels = set(label_inputs(graph_json["nodes"], params, graph_json["heads"]))
    data_inputs = [n for n in sym.list_inputs() if n not in params and n not in labels]
    in_shapes = list(in_shapes or [])
    if len(in_shapes) != len(data_inputs):
        raise ShapeError(f"{len(in_shapes)} input shape(s) given for {len(data_inputs)} input(s) "
                         f"({', '.join(data_inputs)})")
    types = list(in_types) if isinstance(in_types, (list, tuple)) else [in_types] * len(data_inputs)
    shapes = dict(zip(data_inputs, in_shapes))
    dtypes = {n: onnx.helper.tensor_dtype_to_np_dtype(t) for n, t in zip(data_inputs, types)}
    dyn = None
    if dynamic:
        given = dynamic_input_shapes or [tuple(None for _ in s) for s in in_shapes]
        dyn = dict(zip(data_inputs, given))
    result = build_graph(sym, params, shapes, input_dtypes=dtypes,
                         opset=opset_version or opset_stamp.DEFAULT_OPSET, dynamic_input_shapes=dyn,
                         target=target, verbose=verbose)
    self.tensor_map = result.tensor_map
    self.build_result = result
    return result.graph


def is_installed() -> bool:
    return _patch.active


def install() -> None:
    if _patch.active:
        return
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    _patch.set(MXNetGraph, "create_onnx_graph_proto", create_onnx_graph_proto)


def uninstall() -> None:
    _patch.undo()


def input_shape(kwargs: Mapping[str, Any], node: dict, position: int = 0) -> Optional[tuple[int, ...]]:
    """Shape of a node's ``position``-th input at the export shapes, for translations (None if unknown)."""
    entry = node["inputs"][position]
    return _shape_of(kwargs, entry[0], entry[1])


def output_shape(kwargs: Mapping[str, Any], node: dict, index: int = 0) -> Optional[tuple[int, ...]]:
    """Shape of a node's ``index``-th output at the export shapes, for translations (None if unknown)."""
    idx = kwargs.get("node_index", kwargs.get("idx"))
    return None if idx is None else _shape_of(kwargs, idx, index)


def _shape_of(kwargs: Mapping[str, Any], node_idx: int, out_idx: int) -> Optional[tuple[int, ...]]:
    outs = kwargs.get("mx_node_outputs")
    shapes = kwargs.get("mx_shapes") or {}
    if outs is None or node_idx >= len(outs) or out_idx >= len(outs[node_idx]):
        return None
    shape = shapes.get(outs[node_idx][out_idx])
    return None if shape is None else tuple(shape)
