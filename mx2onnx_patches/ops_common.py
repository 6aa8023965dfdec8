"""Shared plumbing for the ``ops_*`` translation modules (registers no translation itself).

MXNet's stock translations repeat the same mistakes: attributes are read with the wrong default
when MXNet's JSON omits them, strings are parsed with ``eval``, and opset-dependent forms (axes as
attribute or input) are hard-coded. :class:`Emitter` gives each replacement one place for these:
typed attribute readers that take MXNet's real defaults, constants as initializers, unique
intermediate names, and opset-aware builders for the ops whose signature changed across opsets.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

from common.errors import ConversionFailure
from common.mxnet_attrs import AttrParseError, parse_bool, parse_literal

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
DEFAULT_OPSET = 13


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


class Emitter:
    """Builds the ONNX nodes of one MXNet node; ``name`` is reserved for the final output."""

    def __init__(self, node: dict, kwargs: dict) -> None:
        from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import get_input_dtypes, get_inputs

        self.node = node
        self.kwargs = kwargs
        self.op_type = str(node.get("op"))
        self.name, self.inputs, self.attrs = get_inputs(node, kwargs)
        self.attrs = dict(self.attrs or {})
        self.input_dtypes = [np.dtype(d) for d in get_input_dtypes(node, kwargs)]
        self.opset = int(kwargs.get("opset_version", DEFAULT_OPSET))
        self.initializer = kwargs["initializer"]
        self.nodes: list[onnx.NodeProto] = []
        self._counter = 0

    # -- errors ------------------------------------------------------------------------------
    def fail(self, message: str) -> ConversionFailure:
        return ConversionFailure(message, node=self.name, op_type=self.op_type)

    # -- attributes ------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        value = self.attrs.get(key)
        return value is not None and str(value).strip() not in ("None", "")

    def attr_str(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return str(self.attrs[key]).strip() if self.has(key) else default

    def attr_bool(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        try:
            return parse_bool(str(self.attrs[key]).strip())
        except AttrParseError:
            raise self.fail(f"attribute {key}={self.attrs[key]!r} is not a boolean") from None

    def _literal(self, key: str) -> Any:
        try:
            return parse_literal(self.attrs[key])
        except AttrParseError:
            raise self.fail(f"attribute {key}={self.attrs[key]!r} cannot be parsed") from None

    def attr_int(self, key: str, default: Optional[int]) -> Optional[int]:
        return int(self._literal(key)) if self.has(key) else default

    def attr_float(self, key: str, default: Optional[float]) -> Optional[float]:
        return float(self._literal(key)) if self.has(key) else default

    def attr_tuple(self, key: str, default: Sequence = ()) -> tuple:
        """A tuple attribute (``(1, 2)``, ``[1,2]`` or a bare scalar); items may be ``None``."""
        if not self.has(key):
            return tuple(default)
        return _as_tuple(self._literal(key))

    # -- names and constants -------------------------------------------------------------------
    def tmp(self, hint: str = "t") -> str:
        """A fresh intermediate name that the exporter never mistakes for one of this node's outputs."""
        self._counter += 1
        return f"{self.name}__{hint}{self._counter}"

    def const(self, value: Any, dtype: Any = None, hint: str = "c") -> str:
        array = np.asarray(value, dtype=dtype)
        tensor_name = self.tmp(hint)
        self.initializer.append(numpy_helper.from_array(array, tensor_name))
        return tensor_name

    def ints(self, values: Iterable[int], hint: str = "i") -> str:
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1), hint=hint)

    def scalar(self, value: float, dtype: Any = None, hint: str = "s") -> str:
        """A 0-d constant in the dtype of input 0 unless told otherwise."""
        return self.const(np.asarray(value, dtype=dtype or self.dtype()), hint=hint)

    def dtype(self, i: int = 0) -> np.dtype:
        return self.input_dtypes[i] if i < len(self.input_dtypes) else np.dtype(np.float32)

    def onnx_dtype(self, i: int = 0) -> int:
        return helper.np_dtype_to_tensor_dtype(self.dtype(i))

    # -- node building --------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], out: Union[None, str, Sequence[str]] = None,
           n_out: int = 1, **attrs: Any) -> Any:
        """Append one node; returns its output name (or the list of names when several)."""
        if out is None:
            outputs = [self.tmp(op_type.lower()) for _ in range(n_out)]
        elif isinstance(out, str):
            outputs = [out]
        else:
            outputs = list(out)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node_name = outputs[0] if outputs[0] == self.name else self.tmp(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=node_name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def reduce(self, op_type: str, x: str, axes: Optional[Sequence[int]], keepdims: bool,
               out: Optional[str] = None) -> str:
        """Reduce* with axes as an attribute or an input, whichever this opset wants."""
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes is None:
            return self.op(op_type, [x], out, keepdims=int(keepdims))
        axes = [int(a) for a in axes]
        if not axes:
            return self.op("Identity", [x], out)
        if axes_as_input:
            return self.op(op_type, [x, self.ints(axes, "axes")], out, keepdims=int(keepdims))
        return self.op(op_type, [x], out, axes=axes, keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes: Sequence[int], out: Optional[str] = None) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.ints(axes, "axes")], out)
        return self.op("Unsqueeze", [x], out, axes=list(axes))

    def squeeze(self, x: str, axes: Sequence[int], out: Optional[str] = None) -> str:
        if self.opset >= 13:
            return self.op("Squeeze", [x, self.ints(axes, "axes")], out)
        return self.op("Squeeze", [x], out, axes=list(axes))

    def split(self, x: str, axis: int, sizes: Sequence[int], outs: Optional[Sequence[str]] = None) -> list[str]:
        outs = list(outs) if outs is not None else [self.tmp("split") for _ in sizes]
        if self.opset >= 13:
            result = self.op("Split", [x, self.ints(sizes, "split")], outs, axis=axis)
        else:
            result = self.op("Split", [x], outs, axis=axis, split=list(sizes))
        return [result] if isinstance(result, str) else list(result)

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int],
              steps: Optional[Sequence[int]] = None, out: Optional[str] = None) -> str:
        inputs = [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")]
        if steps is not None:
            inputs.append(self.ints(steps, "steps"))
        return self.op("Slice", inputs, out)

    def shape(self, x: str) -> str:
        return self.op("Shape", [x])

    def dims(self, x: str, start: int, end: Optional[int] = None) -> str:
        """``shape(x)[start:end]`` as a 1-D int64 tensor (negative indices count from the end)."""
        stop = INT64_MAX if end is None else end
        return self.slice(self.shape(x), [start], [stop], [0])

    def cast(self, x: str, to: Any) -> str:
        return self.op("Cast", [x], to=int(helper.np_dtype_to_tensor_dtype(np.dtype(to))))

    def output_names(self, produced: int = 1) -> list[str]:
        """Names for this node's outputs, in the convention the graph builder wires by index:
        ``name`` for a single-output node, ``name0``, ``name1``, ... otherwise."""
        outs = self.kwargs.get("mx_node_outputs")
        idx = self.kwargs.get("node_index", self.kwargs.get("idx"))
        count = produced
        if outs is not None and idx is not None and idx < len(outs) and outs[idx]:
            count = len(outs[idx])
        if count <= 1:
            return [self.name]
        return [f"{self.name}{i}" for i in range(count)]

    # -- static shapes --------------------------------------------------------------------------
    def input_shape(self, i: int = 0) -> Optional[tuple]:
        """Static shape of input ``i`` from the export-time shape inference, or None."""
        return _static_shape(self.node, self.kwargs, input_index=i)

    def output_shape(self, j: int = 0) -> Optional[tuple]:
        return _static_shape(self.node, self.kwargs, output_index=j)

    def need_input_shape(self, i: int = 0) -> tuple:
        shape = self.input_shape(i)
        if shape is None or any(d is None or int(d) <= 0 for d in shape):
            raise self.fail(f"needs the static shape of input {i}, which the exporter did not provide")
        return tuple(int(d) for d in shape)

    def need_output_shape(self, j: int = 0) -> tuple:
        shape = self.output_shape(j)
        if shape is None or any(d is None or int(d) <= 0 for d in shape):
            raise self.fail(f"needs the static shape of output {j}, which the exporter did not provide")
        return tuple(int(d) for d in shape)

    def weight(self, i: int) -> Optional[np.ndarray]:
        """The value of input ``i`` when it is a stored parameter, else None."""
        src = self.node["inputs"][i]
        mx_graph = self.kwargs.get("mx_graph")
        weights = self.kwargs.get("weights") or {}
        if mx_graph is None:
            return None
        source = mx_graph[src[0]]
        if source.get("op") == "null" and source.get("name") in weights:
            return np.asarray(weights[source["name"]])
        return None

    def done(self) -> list[onnx.NodeProto]:
        return self.nodes


def _internal_output_candidates(source: dict, out_idx: int) -> list[str]:
    """Names ``sym.get_internals()`` may give output ``out_idx`` of one MXNet node."""
    name = source["name"]
    if source.get("op") == "null":
        return [name]
    if source.get("op") == "RNN":
        rnn_names = [f"{name}_output", f"{name}_state_output", f"{name}_statecell_output"]
        return rnn_names[out_idx:out_idx + 1]
    if out_idx == 0:
        return [f"{name}_output", f"{name}_output0"]
    return [f"{name}_output{out_idx}"]


def _static_shape(node: dict, kwargs: dict, input_index: Optional[int] = None,
                  output_index: Optional[int] = None) -> Optional[tuple]:
    """Shape from the graph builder's ``mx_shapes`` (the core exporter passes it), else None."""
    try:  # the core exporter's own accessors, when present
        from . import graph_builder  # type: ignore[attr-defined]

        if input_index is not None and kwargs.get("mx_node_outputs") is not None:
            shape = graph_builder.input_shape(kwargs, node, input_index)
            return None if shape is None else tuple(shape)
        if output_index is not None and kwargs.get("mx_node_outputs") is not None:
            shape = graph_builder.output_shape(kwargs, node, output_index)
            return None if shape is None else tuple(shape)
    except ImportError:
        pass
    shapes = kwargs.get("mx_shapes")
    if not shapes:
        return None
    if input_index is not None:
        src_idx, out_idx = node["inputs"][input_index][:2]
        source = kwargs["mx_graph"][src_idx]
    else:
        source, out_idx = node, output_index
    for key in _internal_output_candidates(source, out_idx):
        if key in shapes:
            return tuple(shapes[key])
    return None


def delegate(op_name: str, me: Any, stock: Any, node: dict, kwargs: dict) -> Any:
    """Hand a node to the translation that would run without ``me``.

    Several modules may replace the same MXNet op for different attribute cases. Each handles
    its own case and passes the rest down this chain: the replacement registered just before
    ``me`` (in the order :func:`translations.install` applies them), else MXNet's stock ``stock``.
    Every link only ever calls an earlier one, so the chain cannot loop.
    """
    from . import translations

    opset = int(kwargs.get("opset_version", DEFAULT_OPSET))
    ordered = sorted(translations.registered(), key=lambda entry: entry[1])
    chain = [fn for name, since, fn in ordered if name == op_name and since <= opset]
    if me in chain:
        position = len(chain) - 1 - chain[::-1].index(me)
        if position > 0:
            return chain[position - 1](node, **kwargs)
    return stock(node, **kwargs)


def stock_translation(function_name: str) -> Any:
    """MXNet's own (opset 12 module) translation function by its Python name, looked up lazily."""

    def call(node: dict, **kwargs: Any) -> Any:
        from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12 as op12

        return getattr(op12, function_name)(node, **kwargs)

    return call
