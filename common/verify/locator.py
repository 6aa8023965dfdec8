"""Find *which node* makes a conversion wrong.

Given one ONNX graph and the intermediate tensors of two runs keyed by ONNX tensor name (a
reference and a candidate, e.g. MXNet vs onnxruntime on the exported model, or onnxruntime vs the
converted PyTorch module), walk the nodes in topological order and report the first node whose
output is out of tolerance: its inputs then agree (or could not be compared, which the report
says), so the fault is that node's conversion.

Intermediates are judged with ``atol`` scaled by the tensor's magnitude (``atol * max(1, max|ref|)``),
without a dtype check, and flat when only the shape differs: rounding error grows with the size
of the values it is made on, frameworks disagree on the dtype of index tensors (MXNet's argmax
is float32) and keep some tensors in equivalent shapes without being wrong.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np
import onnx

from .. import ir as cir
from .compare import OutputComparison, compare_arrays, to_numpy, tolerance_for

log = logging.getLogger(__name__)


@dataclass
class InputCheck:
    """One input of the divergent node: compared (``comparison``), or why not (``status``)."""

    name: str
    status: str  # "agrees" | "differs" | "graph input" | "constant" | "not compared" | "omitted"
    comparison: Optional[OutputComparison] = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status,
                "comparison": None if self.comparison is None else self.comparison.to_dict()}


@dataclass
class Divergence:
    """The first node whose output is out of tolerance."""

    node_name: str
    op_type: str
    domain: str
    index: int
    node_count: int
    attributes: dict[str, Any]
    inputs: list[InputCheck]
    outputs: list[OutputComparison]
    suspects: list[str] = field(default_factory=list)
    origin: Optional[str] = None

    @property
    def inputs_agree(self) -> bool:
        """True when every input was compared (or is a constant/graph input) and agrees."""
        return all(i.status in ("agrees", "graph input", "constant", "omitted") for i in self.inputs)

    def describe(self) -> str:
        """Several lines for a terminal: node, attributes, input and output figures."""
        where = f"{self.node_name or '<unnamed>'} ({self.op_type if not self.domain else self.domain + '::' + self.op_type})"
        lines = [f"first divergent node: {where}, node {self.index + 1} of {self.node_count}"]
        if self.origin:
            lines.append(f"  converted from: {self.origin}")
        if self.attributes:
            lines.append("  attributes: " + ", ".join(f"{k}={_short(v)}" for k, v in self.attributes.items()))
        for label, checks in (("inputs", self.inputs), ):
            for i, check in enumerate(checks):
                head = f"  {label}: " if i == 0 else " " * (len(label) + 4)
                lines.append(f"{head}{check.name or '<omitted>'}  {check.status}" + _figures(check.comparison))
        for i, out in enumerate(self.outputs):
            head = "  outputs: " if i == 0 else " " * 11
            status = "agrees" if out.ok else "DIFFERS"
            lines.append(f"{head}{out.name}  {status}" + _figures(out) + ("" if out.ok else f"; {out.problem()}"))
        if self.suspects:
            lines.append("  some inputs could not be compared; the fault lies in this node or in: "
                         + ", ".join(self.suspects))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_name, "op_type": self.op_type, "domain": self.domain, "index": self.index,
            "node_count": self.node_count, "attributes": {k: _jsonable(v) for k, v in self.attributes.items()},
            "inputs": [i.to_dict() for i in self.inputs], "outputs": [o.to_dict() for o in self.outputs],
            "inputs_agree": self.inputs_agree, "suspects": list(self.suspects), "origin": self.origin,
        }


@dataclass
class LocatorResult:
    """``divergence`` is None when no intermediate is out of tolerance; ``compared`` says how many were checked."""

    divergence: Optional[Divergence]
    compared: int
    largest: Optional[OutputComparison] = None

    @property
    def found(self) -> bool:
        return self.divergence is not None

    def describe(self) -> str:
        if self.divergence is not None:
            return self.divergence.describe()
        if self.compared == 0:
            return "locator: no intermediate tensor could be matched between the two runs"
        text = f"locator: all {self.compared} intermediate tensors compared agree"
        if self.largest is not None and self.largest.max_abs is not None:
            text += f" (largest max abs error {self.largest.max_abs:.3g} at {self.largest.name})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"found": self.found, "compared": self.compared,
                "divergence": None if self.divergence is None else self.divergence.to_dict(),
                "largest": None if self.largest is None else self.largest.to_dict()}


def _figures(c: Optional[OutputComparison]) -> str:
    if c is None or c.max_abs is None:
        return ""
    return f" (max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}, cosine {c.cosine:.6g})"


def _short(value: Any) -> str:
    text = json.dumps(_jsonable(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size <= 16:
            return value.tolist()
        return f"tensor {value.dtype}{list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    name = getattr(value, "name", None)
    return f"<graph {name}>" if name is not None else str(value)


def compare_intermediate(reference: Any, candidate: Any, *, name: str, rtol: Optional[float] = None,
                         atol: Optional[float] = None) -> OutputComparison:
    """The locator's rule: atol scaled by the reference's magnitude, no dtype check."""
    ref = to_numpy(reference)
    cand = to_numpy(candidate)
    tol = tolerance_for(ref.dtype, cand.dtype, rtol=rtol, atol=atol)
    scale = 1.0
    if ref.size and (ref.dtype.kind in "fc" or ref.dtype.name == "bfloat16"):
        magnitude = np.abs(ref.astype(np.float64) if ref.dtype.kind != "c" else ref)
        magnitude = magnitude[np.isfinite(magnitude)]
        scale = max(1.0, float(magnitude.max())) if magnitude.size else 1.0
    if ref.shape != cand.shape and ref.size == cand.size:
        # frameworks keep some tensors in another but equivalent shape (MXNet's (N, C, 1, 1) for
        # ONNX's (N, C)); final outputs get the strict shape check, intermediates only their values
        result = compare_arrays(ref.reshape(-1), cand.reshape(-1), rtol=tol.rtol, atol=tol.atol * scale, name=name,
                                check_dtype=False)
        result.ref_shape, result.cand_shape = tuple(ref.shape), tuple(cand.shape)
        result.message = "same number of elements in another shape: compared flat"
        return result
    return compare_arrays(ref, cand, rtol=tol.rtol, atol=tol.atol * scale, name=name, check_dtype=False)


def locate(
    model: onnx.ModelProto,
    reference: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    origins: Optional[Mapping[str, str]] = None,
) -> LocatorResult:
    """Walk ``model``'s nodes in topological order; return the first whose output is out of tolerance.

    ``reference`` and ``candidate`` map ONNX tensor names to values; only names present in both
    are compared. ``origins`` optionally maps an ONNX tensor name to a description of what it was
    converted from (e.g. the MXNet node), shown in the report.
    """
    graph = cir.from_proto(model).graph
    nodes = list(cir.topological_nodes(graph))
    graph_inputs = {v.name for v in graph.inputs}
    constants = set(graph.initializers)
    status: dict[str, OutputComparison] = {}
    producer: dict[str, Any] = {}
    compared = 0
    largest: Optional[OutputComparison] = None

    for index, node in enumerate(nodes):
        is_constant_node = node.op_type == "Constant" and node.domain in ("", "ai.onnx")
        outs: list[OutputComparison] = []
        for value in node.outputs:
            if not value.name:
                continue
            producer[value.name] = node
            if is_constant_node:
                constants.add(value.name)
                continue
            if value.name in reference and value.name in candidate:
                cmp = compare_intermediate(reference[value.name], candidate[value.name], name=value.name,
                                           rtol=rtol, atol=atol)
                status[value.name] = cmp
                outs.append(cmp)
                compared += 1
                if cmp.max_rel is not None and (largest is None or (largest.max_rel or 0) < cmp.max_rel):
                    largest = cmp
        if not any(not c.ok for c in outs):
            continue
        checks = []
        unknown = []
        for value in node.inputs:
            if value is None or not value.name:
                checks.append(InputCheck("", "omitted"))
            elif value.name in status:
                cmp = status[value.name]
                checks.append(InputCheck(value.name, "agrees" if cmp.ok else "differs", cmp))
            elif value.name in graph_inputs:
                checks.append(InputCheck(value.name, "graph input"))
            elif value.name in constants:
                checks.append(InputCheck(value.name, "constant"))
            else:
                checks.append(InputCheck(value.name, "not compared"))
                unknown.append(value.name)
        suspects = _suspects(unknown, producer, status, graph_inputs, constants)
        origin = None
        if origins:
            origin = next((origins[v.name] for v in node.outputs if v.name in origins), None)
        divergence = Divergence(
            node_name=node.name or "", op_type=node.op_type, domain=node.domain or "", index=index,
            node_count=len(nodes), attributes=cir.attributes(node), inputs=checks, outputs=outs,
            suspects=suspects, origin=origin)
        return LocatorResult(divergence, compared, largest)
    return LocatorResult(None, compared, largest)


def _suspects(unknown: list[str], producer: Mapping[str, Any], status: Mapping[str, OutputComparison],
              graph_inputs: set[str], constants: set[str]) -> list[str]:
    """Nodes upstream of ``unknown`` tensors up to tensors that were compared (or are inputs/constants)."""
    seen: set[str] = set()
    names: list[str] = []
    stack = list(unknown)
    while stack:
        name = stack.pop()
        if name in seen or name in status or name in graph_inputs or name in constants:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is None:
            continue
        label = f"{node.name or name} ({node.op_type})"
        if label not in names:
            names.append(label)
        stack.extend(v.name for v in node.inputs if v is not None and v.name)
    return names[::-1]


def mxnet_origins(symbol_json: "str | Mapping[str, Any]", tensor_map: Mapping[str, str]) -> dict[str, str]:
    """{ONNX tensor name: 'MXNet node (op)'} from a symbol's JSON text/dict and the exporter's tensor map."""
    graph = json.loads(symbol_json) if isinstance(symbol_json, str) else symbol_json
    ops: dict[str, str] = {}
    for node in graph.get("nodes", []):
        if node.get("op") != "null":
            ops[node["name"]] = node["op"]
    out = {}
    for mx_name, onnx_name in tensor_map.items():
        base = mx_name
        for suffix in ("_output",):
            if suffix in base:
                base = base[: base.rindex(suffix)]
        op = ops.get(base)
        out[onnx_name] = f"MXNet {mx_name}" + (f" ({op})" if op else "")
    return out
