"""Ask MXNet about one operator node at a time, where a bad node cannot hurt.

Before a whole symbol is handed to ``mx.sym.load_json`` we need to know what only MXNet knows:
whether the op exists, whether its attributes parse, and how many outputs it has with them (a
reference past the last output crashes MXNet natively). Each op node is loaded alone, its inputs
replaced by fresh variables, which is safe whatever the rest of the file holds; results are
cached per (op, attributes, input count), so a network of repeated blocks costs a few probes.
After loading, :func:`expected_inputs` tells how many inputs MXNet's op takes with its
attributes (data, weight, bias, ...), to refuse nodes wired with too few or too many.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Optional

from common.errors import ModelLoadError, UnsupportedOpError
from mx2onnx_patches.mxnet_import import import_mxnet

from .validate import ATTR_TABLES

_PROBE_NAME = "__x2onnx_probe__"
_LOCATION = re.compile(r"\[\d\d:\d\d:\d\d\]\s*\S+:\d+:\s*")
_IN_OPERATOR = re.compile(r",?\s*in operator \S+\(.*$")


def registered_ops() -> frozenset[str]:
    return frozenset(import_mxnet().operator.get_all_registered_operators())


def mxnet_message(exc: BaseException) -> str:
    """The useful line of an MXNetError (no stack trace, timestamp or source location)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    skip = ("Traceback", "File ", "Stack trace", "[bt]", "At ")
    useful = [ln for ln in lines if not ln.startswith(skip)] or lines or [type(exc).__name__]
    text = next((ln for ln in useful if "Check failed" in ln or "Error in operator" in ln), useful[0])
    text = re.sub(r"^MXNetError:\s*", "", text)
    text = _LOCATION.sub("", text)
    return text[:300]


def _offending_attribute(message: str, attrs: dict[str, str]) -> Optional[str]:
    """Which attribute an MXNet parameter error is about (it names it, or quotes its value)."""
    for pattern in (r"for (?:Parameter )?(\w+)", r"argument '(\w+)'", r"[Pp]arameter (\w+)",
                    r"value for (\w+)"):
        match = re.search(pattern, message)
        if match and match.group(1) in attrs:
            return match.group(1)
    quoted = [k for k, v in attrs.items() if v and f"'{v}'" in message]
    return quoted[0] if len(quoted) == 1 else None


def _node_attrs(node: dict) -> dict[str, str]:
    merged: dict[str, str] = {}
    for table in ATTR_TABLES:
        merged.update(node.get(table) or {})
    return merged


@functools.lru_cache(maxsize=4096)
def _probe(op: str, tables: str, n_inputs: int, graph_attrs: str, subgraphs: str) -> tuple[int, str]:
    """``(visible output count, "")`` or ``(0, MXNet's error line)`` for one op node alone."""
    mx = import_mxnet()
    from .loading import native_stderr_to_log

    nodes: list[dict] = [{"op": "null", "name": f"{_PROBE_NAME}in{i}", "inputs": []} for i in range(n_inputs)]
    node = {"op": op, "name": _PROBE_NAME, "inputs": [[i, 0, 0] for i in range(n_inputs)]}
    node.update(json.loads(tables))
    if subgraphs != "[]":
        node["subgraphs"] = json.loads(subgraphs)
    nodes.append(node)
    graph = {"nodes": nodes, "arg_nodes": list(range(n_inputs)), "heads": [[n_inputs, 0, 0]],
             "attrs": json.loads(graph_attrs)}
    try:
        with native_stderr_to_log():
            sym = mx.sym.load_json(json.dumps(graph))
            count = len(sym.get_internals().list_outputs()) - len(sym.list_inputs())
    except Exception as exc:  # noqa: BLE001 - MXNetError: the attributes do not parse
        return 0, mxnet_message(exc)
    return count, ""


def output_count(node: dict, graph_attrs: dict, file: Optional[str], ops: frozenset[str]) -> int:
    """How many outputs MXNet gives this op node; raise naming the node if MXNet refuses it."""
    op, name = node["op"], node["name"]
    if op not in ops:
        raise UnsupportedOpError(op, node_name=name, file=file, detail="MXNet 1.9.1 has no operator of this name")
    tables = json.dumps({t: node[t] for t in ATTR_TABLES if t in node}, sort_keys=True)
    count, error = _probe(op, tables, len(node["inputs"]), json.dumps(graph_attrs, sort_keys=True),
                          json.dumps(node.get("subgraphs", []), sort_keys=True))
    if error:
        attrs = _node_attrs(node)
        key = _offending_attribute(error, attrs)
        detail = _IN_OPERATOR.sub("", error)
        if key is not None:
            raise ModelLoadError(f"attribute {key}={attrs[key]!r} is invalid: {detail}", file=file, node=name,
                                 op_type=op)
        raise ModelLoadError(f"MXNet cannot read this node: {detail}", file=file, node=name, op_type=op)
    if count < 1:
        raise ModelLoadError("MXNet gives this node no outputs", file=file, node=name, op_type=op)
    return count


@functools.lru_cache(maxsize=4096)
def _input_names(op: str, attrs: str) -> Optional[tuple[str, ...]]:
    mx = import_mxnet()
    import ctypes

    from mxnet.base import OpHandle, SymbolHandle, _LIB, c_str, c_str_array, check_call, mx_uint

    pairs = json.loads(attrs)
    try:
        handle = OpHandle()
        check_call(_LIB.NNGetOpHandle(c_str(op), ctypes.byref(handle)))
        sym_handle = SymbolHandle()
        check_call(_LIB.MXSymbolCreateAtomicSymbol(handle, mx_uint(len(pairs)), c_str_array([k for k, _ in pairs]),
                                                   c_str_array([v for _, v in pairs]), ctypes.byref(sym_handle)))
        sym = mx.sym.Symbol(sym_handle)
        sym._compose(name=_PROBE_NAME)
        return tuple(n[len(_PROBE_NAME) + 1:] for n in sym.list_inputs())
    except Exception:  # noqa: BLE001 - ops whose inputs MXNet cannot list alone (Custom, ...): not checked
        return None


def expected_inputs(op: str, attrs: dict[str, str]) -> Optional[tuple[str, ...]]:
    """Names of the inputs MXNet's ``op`` takes with ``attrs`` (auxiliary states included), or
    ``None`` if MXNet cannot tell without the rest of the graph."""
    visible = sorted((k, v) for k, v in attrs.items() if not (k.startswith("__") and k.endswith("__")))
    return _input_names(op, json.dumps(visible))


def check_input_counts(nodes: list[dict], file: Optional[str]) -> None:
    """Refuse op nodes wired with another number of inputs than their op takes (``nodes``: the
    loaded symbol's JSON, after MXNet's upgrade of old files added auxiliary states)."""
    for node in nodes:
        if node["op"] == "null" or node.get("subgraphs"):
            continue
        names = expected_inputs(node["op"], _node_attrs(node))
        if names is not None and len(names) != len(node["inputs"]):
            raise ModelLoadError(f"has {len(node['inputs'])} input(s), but {node['op']} with these attributes takes "
                                 f"{len(names)} ({', '.join(names) or 'none'})", file=file, node=node["name"],
                                 op_type=node["op"])
