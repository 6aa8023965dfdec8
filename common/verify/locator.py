"""Find *which node* makes a conversion wrong.

Given one ONNX graph and the intermediate tensors of two runs keyed by ONNX tensor name (a
reference and a candidate, e.g. MXNet vs onnxruntime on the exported model, or onnxruntime vs the
converted PyTorch module), report the node that *introduced* the error: the first node, in
topological order, whose **own error** fails the verification criterion (:mod:`.compare`).

A node's own error is measured by teacher forcing (``run_forced`` of the runners): the candidate
recomputes every node from the *reference's* values of its inputs, so upstream differences do
not reach it. Without that, float32 rounding that a deep network amplifies would make some
harmless Convolution the "first" node out of tolerance; with it, a correct node's own error
is a few ulps and only a wrong translation stands out. When no node's own error fails but the
outputs still differ, nothing is blamed: the report says that the difference accumulates
over the graph (the model is ill-conditioned, see :mod:`.sensitivity`).

Intermediates are judged without a dtype check, and flat when only the shape differs:
frameworks disagree on the dtype of index tensors (MXNet's argmax is float32) and keep some
tensors in equivalent shapes without being wrong. Without forced values (``local=None``) the
first node whose output is out of tolerance while its inputs agree is reported, as before.
"""
from __future__ import annotations

import json
import logging
import re
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
    origin: Optional[Origin] = None
    own: list[OutputComparison] = field(default_factory=list)  # outputs recomputed from reference inputs
    cause: str = ""  # what the locating found beyond the node (e.g. "introduced by the fusion passes")

    @property
    def key(self) -> str:
        """The node's name, or its first output's when it has none (as :attr:`LocatorResult.also` names nodes)."""
        return self.node_name or (self.outputs[0].name if self.outputs else self.op_type)

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
        for i, out in enumerate(self.own):
            head = "  own error (inputs from the reference): " if i == 0 else " " * 40
            status = "agrees" if out.ok else "DIFFERS"
            lines.append(f"{head}{out.name}  {status}" + _figures(out))
        if self.suspects:
            lines.append("  some inputs could not be compared; the fault lies in this node or in: "
                         + ", ".join(self.suspects))
        if self.cause:
            lines.append(f"  {self.cause}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_name, "op_type": self.op_type, "domain": self.domain, "index": self.index,
            "node_count": self.node_count, "attributes": {k: _jsonable(v) for k, v in self.attributes.items()},
            "inputs": [i.to_dict() for i in self.inputs], "outputs": [o.to_dict() for o in self.outputs],
            "inputs_agree": self.inputs_agree, "suspects": list(self.suspects), "origin": None if self.origin is None else str(self.origin),
            "own": [o.to_dict() for o in self.own],
        }

    def headline(self) -> str:
        """'first divergent node: NAME (OP)[, converted from ...]: what its own error is' in one line."""
        where = f"{self.node_name or '<unnamed>'} ({self.op_type if not self.domain else self.domain + '::' + self.op_type})"
        bad = next((o for o in self.own if not o.ok), None) or next((o for o in self.outputs if not o.ok), None)
        text = f"first divergent node: {where}"
        if self.origin:
            text += f", converted from {self.origin}"
        if bad is not None:
            text += f"; its {'own ' if bad in self.own else ''}output {bad.name}: {bad.figures()}"
        if self.cause:
            text += f"; {self.cause}"
        return text


@dataclass
class LocatorResult:
    """``divergence`` is None when no intermediate is out of tolerance; ``compared`` says how many were checked."""

    divergence: Optional[Divergence]
    compared: int
    largest: Optional[OutputComparison] = None
    accumulated: bool = False  # tensors differ, but no node's own error does
    largest_own: Optional[OutputComparison] = None
    also: list[str] = field(default_factory=list)  # other nodes whose own error is out of tolerance
    arbitration: list["Arbitration"] = field(default_factory=list)  # see common/verify/arbiter.py
    unchecked: int = 0  # compared tensors whose node's own error could not be computed

    @property
    def rounding_only(self) -> bool:
        """Tensors differ, yet every node whose output was compared computes, from the reference's
        own inputs to it, what the reference computes (within the outputs' tolerance): the
        difference is float rounding the graph amplified, not an operation computed wrongly."""
        return self.accumulated and self.divergence is None and self.compared > 0 and self.unchecked == 0

    @property
    def reference_deviates(self) -> bool:
        """Every node with an own error was judged by the ONNX reference implementation, which sided
        with the candidate: the reference runtime deviates from the ONNX specification there."""
        judged = {a.node for a in self.arbitration}
        names = ([self.divergence.key] if self.divergence is not None else []) + self.also
        return bool(names) and set(names) <= judged and all(a.candidate_right for a in self.arbitration)

    @property
    def found(self) -> bool:
        return self.divergence is not None

    def describe(self) -> str:
        if self.divergence is not None:
            return self.divergence.describe()
        if self.compared == 0:
            return "locator: no intermediate tensor could be matched between the two runs"
        if self.accumulated:
            text = (f"locator: no node's own error exceeds float rounding ({self.compared} tensors compared"
                    + (f"; largest own error {self.largest_own.figures()} at {self.largest_own.name}"
                       if self.largest_own is not None else "")
                    + "); the difference accumulates over the graph")
            return text
        text = f"locator: all {self.compared} intermediate tensors compared agree"
        if self.largest is not None and self.largest.max_abs is not None:
            text += f" (largest error {self.largest.figures()} at {self.largest.name})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"found": self.found, "compared": self.compared, "accumulated": self.accumulated,
                "divergence": None if self.divergence is None else self.divergence.to_dict(),
                "largest": None if self.largest is None else self.largest.to_dict(),
                "largest_own": None if self.largest_own is None else self.largest_own.to_dict(),
                "also": list(self.also), "arbitration": [a.to_dict() for a in self.arbitration],
                "unchecked": self.unchecked}


def _figures(c: Optional[OutputComparison]) -> str:
    if c is None or c.max_abs is None:
        return ""
    return f" ({c.figures()}, cosine {c.cosine:.6g})"


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
    """The locator's rule: the outputs' criterion without the dtype check, flat for equal sizes."""
    ref = to_numpy(reference)
    cand = to_numpy(candidate)
    if ref.dtype.kind in "biu" and cand.dtype.kind == "f" or ref.dtype.kind == "f" and cand.dtype.kind in "biu":
        # MXNet computes indices in float32: compare integer-valued tensors as floats
        ref, cand = ref.astype(np.float64), cand.astype(np.float64)
    if ref.shape != cand.shape and ref.size == cand.size:
        # frameworks keep some tensors in another but equivalent shape (MXNet's (N, C, 1, 1) for
        # ONNX's (N, C)); final outputs get the strict shape check, intermediates only their values
        result = compare_arrays(ref.reshape(-1), cand.reshape(-1), rtol=rtol, atol=atol, name=name,
                                check_dtype=False)
        result.ref_shape, result.cand_shape = tuple(ref.shape), tuple(cand.shape)
        result.message = "same number of elements in another shape: compared flat"
        return result
    return compare_arrays(ref, cand, rtol=rtol, atol=atol, name=name, check_dtype=False)


def locate(
    model: onnx.ModelProto,
    reference: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    origins: Optional[Mapping[str, "Origin"]] = None,
    local: Optional[Mapping[str, Any]] = None,
) -> LocatorResult:
    """Walk ``model``'s nodes in topological order; return the node that introduced the error.

    ``reference`` and ``candidate`` map ONNX tensor names to values; only names present in both
    are compared. ``local`` maps names to the candidate's values recomputed from the reference's
    inputs (teacher forcing; see the module docstring): the first node whose local value fails
    is reported. ``origins`` optionally maps an ONNX tensor name to what it was converted from
    (e.g. the MXNet node), shown in the report.
    """
    graph = cir.from_proto(model).graph
    nodes = list(cir.topological_nodes(graph))
    graph_inputs = {v.name for v in graph.inputs}
    constants = set(graph.initializers)
    status: dict[str, OutputComparison] = {}
    producer: dict[str, Any] = {}
    compared = 0
    largest: Optional[OutputComparison] = None
    largest_own: Optional[OutputComparison] = None
    first_bad: Optional[tuple[int, Any, list[OutputComparison]]] = None
    first: Optional[Divergence] = None
    also: list[str] = []  # later nodes whose own error is out of tolerance too
    unchecked = 0

    for index, node in enumerate(nodes):
        is_constant_node = node.op_type == "Constant" and node.domain in ("", "ai.onnx")
        outs: list[OutputComparison] = []
        own: list[OutputComparison] = []
        for value in node.outputs:
            if not value.name:
                continue
            producer[value.name] = node
            if is_constant_node:
                constants.add(value.name)
                continue
            if value.name not in reference:
                continue
            if value.name in candidate:
                cmp = compare_intermediate(reference[value.name], candidate[value.name], name=value.name,
                                           rtol=rtol, atol=atol)
                status[value.name] = cmp
                outs.append(cmp)
                compared += 1
                if cmp.worst is not None and (largest is None or (largest.worst or 0) < cmp.worst):
                    largest = cmp
            if local is not None and value.name in candidate and value.name not in local:
                unchecked += 1
            if local is not None and value.name in local:
                mine = compare_intermediate(reference[value.name], local[value.name], name=value.name,
                                            rtol=rtol, atol=atol)
                own.append(mine)
                if mine.worst is not None and (largest_own is None or (largest_own.worst or 0) < mine.worst):
                    largest_own = mine
        if local is not None:
            if any(not c.ok for c in own):
                if first is None:
                    first = _divergence(node, index, nodes, outs, own, status, producer, graph_inputs, constants,
                                        origins)
                else:
                    also.append(node.name or node.outputs[0].name)
            if first_bad is None and any(not c.ok for c in outs):
                first_bad = (index, node, outs)
            continue
        if any(not c.ok for c in outs):
            return LocatorResult(_divergence(node, index, nodes, outs, own, status, producer, graph_inputs,
                                             constants, origins), compared, largest)
    if first is not None:
        return LocatorResult(first, compared, largest, largest_own=largest_own, also=also)
    return LocatorResult(None, compared, largest, accumulated=first_bad is not None, largest_own=largest_own,
                         unchecked=unchecked)


def _divergence(node: Any, index: int, nodes: list, outs: list[OutputComparison], own: list[OutputComparison],
                status: Mapping[str, OutputComparison], producer: Mapping[str, Any], graph_inputs: set[str],
                constants: set[str], origins: Optional[Mapping[str, "Origin"]]) -> Divergence:
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
    return Divergence(
        node_name=node.name or "", op_type=node.op_type, domain=node.domain or "", index=index,
        node_count=len(nodes), attributes=cir.attributes(node), inputs=checks, outputs=outs,
        suspects=suspects, origin=origin, own=own)


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


@dataclass(frozen=True)
class Origin:
    """What an ONNX tensor was converted from: a node of the source framework."""

    framework: str
    node: str
    op: str = ""

    def __str__(self) -> str:
        return f"{self.framework} node {self.node}" + (f" ({self.op})" if self.op else "")


def mxnet_origins(symbol_json: "str | Mapping[str, Any]", tensor_map: Mapping[str, str]) -> dict[str, Origin]:
    """{ONNX tensor name: the MXNet node it holds the output of} from a symbol's JSON and the
    exporter's tensor map (MXNet internal names are ``<node>_output[N]``)."""
    graph = json.loads(symbol_json) if isinstance(symbol_json, str) else symbol_json
    ops = {node["name"]: node["op"] for node in graph.get("nodes", []) if node.get("op") != "null"}
    out = {}
    for mx_name, onnx_name in tensor_map.items():
        base = re.sub(r"_output\d*$", "", mx_name)
        out[onnx_name] = Origin("MXNet", base if base in ops else mx_name, ops.get(base, ""))
    return out
