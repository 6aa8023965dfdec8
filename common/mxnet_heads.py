"""Which parts of an MXNet symbol serve training only: the labels of loss heads.

A loss head (``SoftmaxOutput``, ``LinearRegressionOutput``, ...) passes its prediction through at
inference; its label input only shapes the gradient, whatever the label is called. A variable is
a label when everything it feeds ends in a head's label slot, directly or through other ops
(``label -> Reshape -> SoftmaxOutput``, as detection and segmentation training symbols do); those
ops serve training only as well. This reads the symbol JSON alone (no MXNet import), so the
exporter, the verification runners, the input planner and ``info`` share one definition.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence

# op -> input positions that are labels (MXNet's argument lists: [data, label])
LOSS_HEAD_LABEL_SLOTS: Mapping[str, tuple[int, ...]] = {
    "SoftmaxOutput": (1,), "Softmax": (1,), "LinearRegressionOutput": (1,), "LogisticRegressionOutput": (1,),
    "MAERegressionOutput": (1,), "SVMOutput": (1,),
}


def training_only_nodes(nodes: Sequence[Mapping[str, Any]], heads: Optional[Iterable[Sequence[int]]] = None
                        ) -> set[int]:
    """Indices of the nodes whose every use ends in a loss head's label slot.

    ``nodes`` are in MXNet's order (every node after its inputs); ``heads`` are the graph's
    outputs (a node read by one is never training-only). Nodes nobody reads are not counted.
    """
    uses: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for index, node in enumerate(nodes):
        if node.get("op") == "null":
            continue  # MXNet keeps a variable's "inputs" in its JSON but never reads them
        for position, entry in enumerate(node.get("inputs", [])):
            uses[entry[0]].append((str(node.get("op")), position, index))
    outputs = {entry[0] for entry in heads or ()}
    only: set[int] = set()
    for index in range(len(nodes) - 1, -1, -1):  # consumers come after their inputs
        if index in outputs or not uses[index]:
            continue
        if all(pos in LOSS_HEAD_LABEL_SLOTS.get(op, ()) or consumer in only for op, pos, consumer in uses[index]):
            only.add(index)
    return only


def label_inputs(nodes: Sequence[Mapping[str, Any]], params: Collection[str] = (),
                 heads: Optional[Iterable[Sequence[int]]] = None) -> list[str]:
    """Names of the variables (not in ``params``) that only feed loss heads' labels, in node order."""
    only = training_only_nodes(nodes, heads)
    return [str(nodes[i]["name"]) for i in sorted(only)
            if nodes[i].get("op") == "null" and nodes[i]["name"] not in params]
