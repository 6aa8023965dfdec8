"""Symbol JSON in the forms older MXNet versions wrote, made from a symbol built today.

- :func:`python2_style`: what Python-2-era MXNet (up to 1.x) wrote: attribute values are
  ``str()`` of what the user passed, so tuples of Python 2 longs carry an ``L`` after every
  integer (``'(8L, 3L, 3L, 3L)'``), scalars do not (``str(8L) == '8'``);
- :func:`legacy_style`: the JSON layout of MXNet 0.8 (``param`` tables, ``backward_source_id``,
  ``[node, output]`` references, no auxiliary-state variables, hidden keys such as ``lr_mult``
  and ``weight_lr_mult`` without underscores in ``attr``), of 0.9-0.12 (``attr`` tables and a
  version stamp) and of 1.x (``attrs``), which MXNet 1.9.1 upgrades when it loads them.
"""
from __future__ import annotations

import copy
import re
from typing import Any

_INT_IN_TUPLE = re.compile(r"(-?\d+)(?=\s*[,)\]])")
AUX_SUFFIXES = ("_moving_mean", "_moving_var")
STYLES = {"0.8": None, "0.9.1": 901, "0.12": 1200, "1.3": 10300, "1.9.1": 10901}


def python2_style(graph: dict, version: int = 10300) -> dict:
    """``graph`` as Python-2 MXNet ``version`` wrote it: ``L`` after every integer in a tuple."""
    out = copy.deepcopy(graph)
    for node in out["nodes"]:
        for table in ("attrs", "attr", "param"):
            attrs = node.get(table) or {}
            for key, value in attrs.items():
                if value.lstrip().startswith(("(", "[")):
                    attrs[key] = _INT_IN_TUPLE.sub(r"\1L", value)
    out["attrs"] = {"mxnet_version": ["int", version]}
    return out


def legacy_style(graph: dict, style: str) -> dict:
    """``graph`` in the JSON layout of MXNet ``style`` (a key of :data:`STYLES`)."""
    if style == "0.8":
        return _mxnet_08(graph)
    out = copy.deepcopy(graph)
    if style.startswith("0."):
        for node in out["nodes"]:
            node["attr"] = node.pop("attrs", {})
    out["attrs"] = {"mxnet_version": ["int", STYLES[style]]}
    return out


def _mxnet_08(graph: dict) -> dict:
    nodes: list[dict[str, Any]] = []
    remap: dict[int, int] = {}
    dropped = {i for i, n in enumerate(graph["nodes"]) if n["op"] == "null" and n["name"].endswith(AUX_SUFFIXES)}
    for index, node in enumerate(graph["nodes"]):
        if index in dropped:
            continue
        remap[index] = len(nodes)
        node = copy.deepcopy(node)
        attrs = node.pop("attrs", {})
        hidden = {k.strip("_"): v for k, v in attrs.items() if k.startswith("__") and k != "__shape__"}
        node["param"] = {k: v for k, v in attrs.items() if not k.startswith("__")} if node["op"] != "null" else {}
        if "__shape__" in attrs:
            hidden["__shape__"] = attrs["__shape__"]
        if hidden:
            node["attr"] = hidden
        node["inputs"] = [[remap[e[0]], e[1]] for e in node["inputs"] if e[0] not in dropped]
        node["backward_source_id"] = -1
        nodes.append(node)
    return {"nodes": nodes, "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
            "heads": [[remap[h[0]], h[1]] for h in graph["heads"]]}


def declared_convnet():
    """conv + bn + relu + pool + reshape + fc + SoftmaxOutput, with declared input and weight
    shapes, tuple attributes (kernel/stride/pad, reshape's (0, -1)) and an implicit label."""
    from .mxnet_ops import mx

    data = mx.sym.var("data", shape=(1, 3, 16, 16))
    weight = mx.sym.var("conv0_weight", shape=(8, 3, 3, 3))
    x = mx.sym.Convolution(data, weight=weight, num_filter=8, kernel=(3, 3), stride=(1, 1), pad=(1, 1), no_bias=True,
                           name="conv0")
    x = mx.sym.BatchNorm(x, fix_gamma=False, name="bn0")
    x = mx.sym.Activation(x, act_type="relu", name="relu0")
    x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool0")
    x = mx.sym.Reshape(x, shape=(0, -1), name="flat0")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc0")
    return mx.sym.SoftmaxOutput(x, name="softmax")
