"""When the converted model and onnxruntime disagree at a node, ask the ONNX specification who is right.

onnxruntime is the reference of ``onnx2x torch``, but it is not the specification: some of its CPU
kernels deviate from it on some machines (onnxruntime 1.31's uint8 x int8 integer matmuls
saturate pair sums at int16 on x86 CPUs without VNNI, which ``quantize_dynamic``'s defaults hit).
A converter that computes what the specification says is then refused for being right.

So when the locator finds nodes whose own error is out of tolerance, each one is evaluated once
more by ``onnx.reference`` (the ONNX project's executable specification) on the same inputs the
two runtimes received. If the specification agrees with the converted module and not with
onnxruntime, the disagreement is onnxruntime's; :class:`Arbitration` records which side it took.
Only single nodes are evaluated, so the cost does not grow with the model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import onnx
from onnx import numpy_helper

from .compare import to_numpy
from .locator import compare_intermediate

log = logging.getLogger(__name__)


@dataclass
class Arbitration:
    """The ONNX reference implementation's verdict on one node."""

    node: str
    op_type: str
    candidate_right: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "candidate_right": self.candidate_right,
                "detail": self.detail}


def node_key(node: onnx.NodeProto) -> str:
    """How the locator names a node: its name, or its first output's when it has none."""
    return node.name or (node.output[0] if node.output else node.op_type)


def _known_values(model: onnx.ModelProto, values: Mapping[str, Any]) -> dict[str, Any]:
    known: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
                             if t.data_location != onnx.TensorProto.EXTERNAL}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            try:
                from onnx.reference import ReferenceEvaluator

                known[node.output[0]] = ReferenceEvaluator(node).run(None, {})[0]
            except Exception:  # noqa: BLE001 - a constant we cannot read: nodes reading it stay undecided
                continue
    known.update({k: to_numpy(v) for k, v in values.items()})
    return known


def arbitrate(model: onnx.ModelProto, node_names: Sequence[str], reference: Mapping[str, Any],
              candidate_own: Mapping[str, Any], *, rtol: Optional[float] = None,
              atol: Optional[float] = None) -> list[Arbitration]:
    """The specification's verdict on each node in ``node_names`` whose inputs are all known.

    ``reference`` holds the reference runtime's values (inputs and intermediates), which both
    the reference's node and, through teacher forcing, the candidate's node (``candidate_own``)
    were computed from. Nodes the reference implementation cannot evaluate are left out.
    """
    from onnx.reference import ReferenceEvaluator

    wanted = set(node_names)
    known = _known_values(model, reference)
    opsets = {o.domain: o.version for o in model.opset_import}
    verdicts = []
    for node in model.graph.node:
        key = node_key(node)
        if key not in wanted or any(i and i not in known for i in node.input):
            continue
        outputs = [o for o in node.output if o and o in reference and o in candidate_own]
        if not outputs:
            continue
        try:
            graph = onnx.helper.make_graph([node], "arbiter", [], [onnx.helper.make_value_info(o, onnx.TypeProto())
                                                                   for o in node.output if o])
            single = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v)
                                                                  for d, v in opsets.items()])
            evaluator = ReferenceEvaluator(single)
            feeds = {i: known[i] for i in node.input if i}
            spec = dict(zip([o for o in node.output if o], evaluator.run(None, feeds)))
        except Exception as exc:  # noqa: BLE001 - ops onnx.reference lacks (most contrib ops)
            log.info("the ONNX reference implementation cannot evaluate %s (%s): %s", key, node.op_type, exc)
            continue
        candidate_ok = all(compare_intermediate(spec[o], candidate_own[o], name=o, rtol=rtol, atol=atol).ok
                           for o in outputs)
        reference_ok = all(compare_intermediate(spec[o], reference[o], name=o, rtol=rtol, atol=atol).ok
                           for o in outputs)
        if candidate_ok and not reference_ok:
            detail = "the ONNX reference implementation agrees with the converted module, not with the reference"
        elif reference_ok and not candidate_ok:
            detail = "the ONNX reference implementation agrees with the reference"
        else:
            detail = "the ONNX reference implementation agrees with " + ("both" if candidate_ok else "neither")
        verdicts.append(Arbitration(key, node.op_type, candidate_ok and not reference_ok, detail))
    return verdicts


def describe_deviation(arbitrations: Sequence[Arbitration], reference_name: str) -> str:
    """One warning line for a verdict accepted because the reference deviates from the specification."""
    nodes = ", ".join(f"{a.node} ({a.op_type})" for a in arbitrations[:3])
    more = f" and {len(arbitrations) - 3} more" if len(arbitrations) > 3 else ""
    return (f"{reference_name} deviates from the ONNX specification at {nodes}{more}: the ONNX reference "
            "implementation agrees with the converted module there, so the outputs' difference is not the "
            "conversion's")
