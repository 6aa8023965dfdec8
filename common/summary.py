"""Model summaries: what users first open a model viewer for (inputs, outputs, opset, ops, size).

``onnx_summary`` reads an ONNX model through the IR without loading external weights;
``mxnet_summary`` reads an MXNet symbol's JSON, and the header of its ``.params`` file for the
parameter count, without importing MXNet. ``format_summary`` renders either for a terminal and
``ModelSummary.to_dict`` for JSON.
"""
from __future__ import annotations

import json
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import onnx

from .errors import ModelLoadError
from .mxnet_attrs import AttrParseError, parse_int, parse_tuple
from .mxnet_heads import label_inputs

PathLike = Union[str, "os.PathLike[str]"]
Dim = Union[int, str, None]


@dataclass
class TensorInfo:
    name: str
    shape: Optional[tuple[Dim, ...]]
    dtype: Optional[str]

    def shape_text(self) -> str:
        if self.shape is None:
            return "?"
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": None if self.shape is None else list(self.shape), "dtype": self.dtype}


@dataclass
class ModelSummary:
    """Everything ``info`` prints; ``opsets`` is ``{'mxnet': version}`` for MXNet symbols."""

    format: str
    path: str
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    opsets: dict[str, int] = field(default_factory=dict)
    op_histogram: dict[str, int] = field(default_factory=dict)
    node_count: int = 0
    parameter_count: Optional[int] = None
    parameter_bytes: Optional[int] = None
    parameter_tensors: int = 0
    producer: str = ""
    ir_version: Optional[int] = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "path": self.path, "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs], "opsets": dict(self.opsets),
            "op_histogram": dict(self.op_histogram), "node_count": self.node_count,
            "parameter_count": self.parameter_count, "parameter_bytes": self.parameter_bytes,
            "parameter_tensors": self.parameter_tensors, "producer": self.producer, "ir_version": self.ir_version,
            "notes": list(self.notes),
        }


# --- ONNX -----------------------------------------------------------------------------------
def onnx_summary(model: "onnx.ModelProto | PathLike") -> ModelSummary:
    """Summary of an ONNX model (a proto or a path; external weights are not read)."""
    from . import ir as cir
    from .model_io import load_onnx

    if isinstance(model, onnx.ModelProto):
        proto, label = model, model.graph.name or "<model>"
    else:
        proto, label = load_onnx(model, load_external_data=False), str(model)
    proto, maps = cir.without_map_types(proto)  # onnx-ir has no map type: summarize them untyped
    ir_model = cir.from_proto(proto, file=label)
    graph = ir_model.graph
    inits = graph.initializers
    summary = ModelSummary(format="onnx", path=label, producer=" ".join(
        p for p in (ir_model.producer_name, ir_model.producer_version) if p), ir_version=ir_model.ir_version)
    for value in graph.inputs:
        if value.name in inits:
            continue
        summary.inputs.append(_ir_tensor_info(value))
    summary.outputs = [_ir_tensor_info(v) for v in graph.outputs]
    summary.opsets = {("ai.onnx" if d == "" else d): int(v) for d, v in sorted(ir_model.opset_imports.items())}
    histogram: Counter[str] = Counter()
    count = 0
    for node in graph.all_nodes():
        domain = node.domain or ""
        histogram[node.op_type if domain in ("", "ai.onnx") else f"{domain}::{node.op_type}"] += 1
        count += 1
    for function in ir_model.functions.values():
        for node in function:
            histogram[f"(function {function.name}) {node.op_type}"] += 1
    summary.op_histogram = dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0])))
    summary.node_count = count
    total = total_bytes = 0
    for value in inits.values():
        tensor = value.const_value
        shape = tuple(value.shape) if value.shape is not None else (tuple(tensor.shape) if tensor is not None else ())
        n = 1
        for d in shape:
            n *= int(d) if isinstance(d, int) else 0
        total += n
        dtype = value.dtype if value.dtype is not None else (tensor.dtype if tensor is not None else None)
        if dtype is not None:
            try:
                total_bytes += n * dtype.itemsize
            except Exception:
                pass
    summary.parameter_count, summary.parameter_bytes, summary.parameter_tensors = total, total_bytes, len(inits)
    if len(proto.graph.sparse_initializer):
        summary.notes.append(f"{len(proto.graph.sparse_initializer)} sparse initializers not counted")
    summary.notes.extend(f"map-typed value {m}" for m in maps)
    return summary


def _ir_tensor_info(value: Any) -> TensorInfo:
    shape = None
    if value.shape is not None:
        shape = tuple(d if isinstance(d, int) else (str(d) if getattr(d, "value", d) is not None else None)
                      for d in value.shape)
    dtype = None
    if value.dtype is not None:
        dtype = value.dtype.name.lower()
    elif value.type is not None:
        dtype = str(value.type)
    return TensorInfo(value.name, shape, dtype)


# --- MXNet ----------------------------------------------------------------------------------
_MX_DTYPES = {0: ("float32", 4), 1: ("float64", 8), 2: ("float16", 2), 3: ("uint8", 1), 4: ("int32", 4),
              5: ("int8", 1), 6: ("int64", 8), 7: ("bool", 1), 8: ("int16", 2), 9: ("uint16", 2),
              10: ("uint32", 4), 11: ("uint64", 8), 12: ("bfloat16", 2)}
_LIST_MAGIC = 0x112
_V1, _V2, _V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA


def read_mxnet_params_header(path: PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} of every array in an MXNet ``.params`` file, without reading the data.

    Understands the list format MXNet's ``nd.save`` writes (legacy arrays of MXNet < 0.9 and the
    v1/v2/v3 array records). Names keep their ``arg:``/``aux:`` prefix.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        handle = p.open("rb")
    except OSError as exc:
        raise ModelLoadError(f"cannot read params file ({exc.strerror or exc})", file=str(path)) from exc
    with handle as f:
        def read(fmt: str) -> tuple:
            n = struct.calcsize(fmt)
            data = f.read(n)
            if len(data) != n:
                raise ModelLoadError("truncated MXNet params file", file=str(path))
            return struct.unpack(fmt, data)

        magic, _reserved = read("<QQ")
        if magic != _LIST_MAGIC:
            raise ModelLoadError("not an MXNet params file (bad magic number)", file=str(path))
        (count,) = read("<Q")
        if count > size:
            raise ModelLoadError("corrupt MXNet params file (array count)", file=str(path))
        arrays = []
        for _ in range(count):
            (head,) = read("<I")
            if head in (_V2, _V3):
                (stype,) = read("<i")
                if stype != 0:
                    raise ModelLoadError("sparse arrays in params files are not summarised", file=str(path))
                (ndim,) = read("<i")
                shape = read(f"<{ndim}q") if ndim > 0 else ()
                empty = ndim < 0  # unknown shape: an empty record; ndim 0 is a scalar with data
            elif head == _V1:
                (ndim,) = read("<I")
                shape = read(f"<{ndim}q") if ndim else ()
                empty = ndim == 0
            else:  # legacy: the header is the number of dimensions, dims are uint32
                ndim = head
                if ndim > 32:
                    raise ModelLoadError("corrupt MXNet params file (array header)", file=str(path))
                shape = read(f"<{ndim}I") if ndim else ()
                empty = ndim == 0
            if empty:
                arrays.append(((), "float32"))
                continue
            _dev_type, _dev_id, type_flag = read("<iii")
            dtype, itemsize = _MX_DTYPES.get(type_flag, (f"type{type_flag}", 0))
            n = 1
            for d in shape:
                n *= int(d)
            if itemsize == 0 or n < 0 or n * itemsize > size:
                raise ModelLoadError("corrupt MXNet params file (array size)", file=str(path))
            f.seek(n * itemsize, os.SEEK_CUR)
            arrays.append((tuple(int(d) for d in shape), dtype))
        (nnames,) = read("<Q")
        names = []
        for _ in range(nnames):
            (length,) = read("<Q")
            if length > size:
                raise ModelLoadError("corrupt MXNet params file (name length)", file=str(path))
            names.append(f.read(length).decode("utf-8", "replace"))
    if len(names) != len(arrays):
        raise ModelLoadError("MXNet params file has unnamed arrays", file=str(path))
    return dict(zip(names, arrays))


def find_mxnet_params(symbol_path: PathLike) -> Optional[Path]:
    """``prefix-NNNN.params`` beside ``prefix-symbol.json`` (the newest epoch), if any."""
    p = Path(symbol_path)
    prefix = re.sub(r"-symbol\.json$", "", p.name)
    if prefix == p.name:
        return None
    candidates = sorted(p.parent.glob(f"{glob_escape(prefix)}-*.params"))
    numbered = [c for c in candidates if re.fullmatch(re.escape(prefix) + r"-\d+\.params", c.name)]
    return numbered[-1] if numbered else None


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def mxnet_summary(
    symbol_json: PathLike,
    params: Optional[PathLike] = None,
    input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
) -> ModelSummary:
    """Summary of an MXNet symbol file; ``params`` (default: found beside it) gives the parameter count."""
    path = Path(symbol_json)
    try:
        graph = json.loads(path.read_text())
    except OSError as exc:
        raise ModelLoadError(f"cannot read symbol file ({exc.strerror or exc})", file=str(path)) from exc
    except ValueError as exc:
        raise ModelLoadError(f"not an MXNet symbol file (invalid JSON: {exc})", file=str(path)) from exc
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list) or "heads" not in graph:
        raise ModelLoadError("not an MXNet symbol file (no 'nodes' and 'heads')", file=str(path))
    nodes = graph["nodes"]
    summary = ModelSummary(format="mxnet", path=str(path))
    version = _mx_attrs(graph).get("mxnet_version")
    if isinstance(version, list) and len(version) == 2:
        v = int(version[1])
        summary.opsets = {"mxnet": v}
        summary.producer = f"MXNet {v // 10000}.{v // 100 % 100}.{v % 100}"
    elif "param" in (nodes[0] if nodes else {}):
        summary.producer = "MXNet < 0.9 (legacy JSON)"

    params_path = Path(params) if params is not None else find_mxnet_params(path)
    header: dict[str, tuple[tuple[int, ...], str]] = {}
    if params_path is not None:
        header = {k.partition(":")[2] if ":" in k else k: v for k, v in read_mxnet_params_header(params_path).items()}
        summary.notes.append(f"parameters read from {params_path}")
    labels = set(label_inputs(nodes, heads=graph["heads"]))
    shapes = dict(input_shapes or {})
    histogram: Counter[str] = Counter()
    param_names = []
    for node in nodes:
        op = node.get("op")
        if op != "null":
            histogram[op] += 1
            continue
        name = node["name"]
        attrs = _mx_attrs(node)
        is_param = name in header if header else name.endswith(
            ("_weight", "_bias", "_gamma", "_beta", "_moving_mean", "_moving_var", "_running_mean", "_running_var"))
        if is_param:
            param_names.append(name)
            continue
        if name in labels:
            continue
        shape: Optional[tuple[Dim, ...]] = None
        if name in shapes:
            shape = tuple(int(d) for d in shapes[name])
        elif "__shape__" in attrs:
            try:
                dims = parse_tuple(attrs["__shape__"], stream=True)
                shape = None if dims is None else tuple(d if d > 0 else None for d in dims)
            except AttrParseError:
                shape = None  # MXNet cannot read it either: the shape must be given
        try:
            dtype = _MX_DTYPES.get(parse_int(attrs.get("__dtype__", "0"), stream=True), ("float32", 4))[0]
        except AttrParseError:
            dtype = "float32"
        summary.inputs.append(TensorInfo(name, shape, dtype))
    if labels:
        summary.notes.append("training labels (not inference inputs): " + ", ".join(sorted(labels)))
    for head in graph["heads"]:
        node = nodes[head[0]]
        n_out = _mx_num_outputs(node)
        suffix = "_output" if n_out == 1 else f"_output{head[1]}"
        summary.outputs.append(TensorInfo(node["name"] + suffix if node.get("op") != "null" else node["name"], None, None))
    summary.op_histogram = dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0])))
    summary.node_count = sum(histogram.values())
    summary.parameter_tensors = len(param_names)
    if header:
        total = total_bytes = 0
        for name in param_names:
            shape, dtype = header[name]
            n = 1
            for d in shape:
                n *= d
            total += n
            total_bytes += n * dict(_MX_DTYPES.values()).get(dtype, 0)
        summary.parameter_count, summary.parameter_bytes = total, total_bytes
        extra = sorted(set(header) - set(param_names))
        if extra:
            summary.notes.append(f"{len(extra)} arrays in the params file are not used by the symbol")
    else:
        summary.notes.append("parameter count unknown: no .params file found beside the symbol")
    return summary


def _mx_attrs(node: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("attrs", "attr", "param"):
        value = node.get(key)
        if isinstance(value, dict):
            return value
    return {}


_MULTI_OUTPUT = {"SliceChannel": "num_outputs", "split": "num_outputs", "_split_v2": None}


def _mx_num_outputs(node: Mapping[str, Any]) -> int:
    op = node.get("op")
    if op in ("SliceChannel", "split"):
        try:
            return parse_int(_mx_attrs(node).get("num_outputs", "1"))
        except AttrParseError:
            return 1  # MXNet refuses the value; the summary only names outputs
    if op == "_split_v2":
        return 2  # never 1: MXNet names its outputs with an index
    return 1


# --- rendering ------------------------------------------------------------------------------
def format_summary(summary: ModelSummary, *, max_ops: int = 40) -> str:
    """The summary as aligned text for a terminal."""
    lines = [f"model:      {summary.path} ({summary.format.upper()})"]
    if summary.producer:
        lines.append(f"producer:   {summary.producer}")
    if summary.format == "onnx":
        opsets = ", ".join(f"{d} {v}" for d, v in summary.opsets.items())
        lines.append(f"opset:      {opsets or '-'}" + (f" (IR version {summary.ir_version})" if summary.ir_version else ""))
    elif summary.opsets:
        lines.append(f"version:    {summary.producer}")
    for title, tensors in (("inputs", summary.inputs), ("outputs", summary.outputs)):
        lines.append(f"{title + ':':<11} {len(tensors)}")
        width = max((len(t.name) for t in tensors), default=0)
        for t in tensors:
            lines.append(f"  {t.name:<{width}}  {t.shape_text():<20} {t.dtype or ''}".rstrip())
    if summary.parameter_count is not None:
        lines.append(f"parameters: {summary.parameter_count:,} in {summary.parameter_tensors} tensors "
                     f"({_human_bytes(summary.parameter_bytes or 0)})")
    else:
        lines.append(f"parameters: unknown ({summary.parameter_tensors} tensors)")
    lines.append(f"nodes:      {summary.node_count} ({len(summary.op_histogram)} op types)")
    width = max((len(op) for op in list(summary.op_histogram)[:max_ops]), default=0)
    for i, (op, count) in enumerate(summary.op_histogram.items()):
        if i == max_ops:
            lines.append(f"  ... {len(summary.op_histogram) - max_ops} more op types")
            break
        lines.append(f"  {op:<{width}}  {count}")
    for note in summary.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
