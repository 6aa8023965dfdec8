"""MXNet's gradients of a seeded scalar loss, the reference side of the gradient check.

The loss is ``sum_i sum(output_i * weight_i)`` with one fixed random tensor per output, so its
gradient with respect to output ``i`` is ``weight_i`` and MXNet's ``executor.backward(weights)``
computes exactly the gradient of that loss. Three things in a saved MXNet symbol would make that
gradient something else, so the symbol is rewritten first (:func:`gradient_symbol_json`):

* **Loss heads** (``SoftmaxOutput``, ``LinearRegressionOutput``, ...) ignore the gradient that
  flows into them and backpropagate ``prediction - label`` instead; each is replaced by the
  operator its forward pass computes (softmax, identity, sigmoid), with a true backward.
  (``SoftmaxActivation`` becomes ``softmax`` too: it has no float64 kernel, and the finite
  differences that settle disputes run the forward in float64.)
* **Dropout** draws its own random mask in a training forward; no other framework can reproduce
  it, so it becomes an identity (the check compares the deterministic part of training).
* **BatchNorm**: MXNet must run a training forward (``is_train=True``) before ``backward`` (with
  ``is_train=False`` its gradients are silently wrong), so eval-mode gradients (global statistics)
  come from ``use_global_stats=True`` in the node's attributes; train mode (batch statistics)
  leaves it off.

Runs on MXNet's plain executor (``MXNET_SUBGRAPH_BACKEND=NONE``), on copies of the parameters and
auxiliary states (a training forward updates the moving statistics in place).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import ConversionFailure, ShapeError
from ..mxnet_heads import label_inputs
from .compare import to_numpy
from .runners import _plain_mxnet_executor, import_mxnet

log = logging.getLogger(__name__)

# loss head -> (op its forward computes, attrs); SoftmaxOutput depends on its own attrs (below)
_HEAD_FORWARD: Mapping[str, tuple[str, dict[str, str]]] = {
    "LinearRegressionOutput": ("_copy", {}),
    "MAERegressionOutput": ("_copy", {}),
    "SVMOutput": ("_copy", {}),
    "LogisticRegressionOutput": ("Activation", {"act_type": "sigmoid"}),
}


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true")


def _softmax_nodes(name: str, source: list, mode: str) -> list[dict[str, Any]]:
    """Nodes computing a softmax with MXNet's ``softmax`` operator (float64 capable, unlike
    SoftmaxActivation): over axis 1 (``channel``), the last axis, or each instance flattened."""
    if mode == "channel":
        return [{"op": "softmax", "name": name, "attrs": {"axis": "1"}, "inputs": [source]}]
    if mode == "last":
        return [{"op": "softmax", "name": name, "attrs": {"axis": "-1"}, "inputs": [source]}]
    return [{"op": "Flatten", "name": f"{name}_flat", "attrs": {}, "inputs": [source]},
            {"op": "softmax", "name": f"{name}_softmax", "attrs": {"axis": "-1"}, "inputs": ["@0"]},
            {"op": "reshape_like", "name": name, "attrs": {}, "inputs": ["@1", source]}]


def _softmax_mode(op: str, attrs: Mapping[str, Any]) -> str:
    """Which softmax a softmax head computes (SoftmaxOutput: multi_output -> axis 1, preserve_shape
    -> last axis, else each instance flattened; SoftmaxActivation: its ``mode``)."""
    if op == "SoftmaxActivation":
        return "channel" if str(attrs.get("mode", "instance")) == "channel" else "instance"
    if _true(attrs.get("multi_output", False)):
        return "channel"
    if _true(attrs.get("preserve_shape", False)):
        return "last"
    return "instance"


def _replacement(node: dict[str, Any], train: bool) -> list[dict[str, Any]]:
    """The node(s) a node becomes in the gradient symbol; inputs ``"@k"`` are the k-th new node."""
    op = node.get("op")
    attrs = dict(node.get("attrs", {}))
    first = node.get("inputs", [])[:1]
    if op in ("SoftmaxOutput", "Softmax", "SoftmaxActivation"):
        return _softmax_nodes(node["name"], first[0], _softmax_mode(op, attrs))
    if op in _HEAD_FORWARD:
        new_op, new_attrs = _HEAD_FORWARD[op]
        return [{"op": new_op, "name": node["name"], "attrs": dict(new_attrs), "inputs": first}]
    if op == "Dropout":
        return [{"op": "_copy", "name": node["name"], "attrs": {}, "inputs": first}]
    if op == "BatchNorm":
        attrs["use_global_stats"] = "False" if train else "True"
        return [{**node, "attrs": attrs}]
    return [node]


def gradient_symbol_json(symbol_json: str, *, train: bool) -> str:
    """The symbol rewritten so that ``backward(weights)`` is the gradient of ``sum(out * weights)``
    (see the module docstring); ``train`` keeps BatchNorm on batch statistics. Softmax heads use
    MXNet's ``softmax`` so that the forward also runs in float64 (finite differences)."""
    graph = json.loads(symbol_json)
    nodes: list[dict[str, Any]] = []
    where: dict[int, int] = {}  # old index -> new index
    for index, node in enumerate(graph["nodes"]):
        if node.get("op") == "null":
            where[index] = len(nodes)
            nodes.append(node)
            continue
        node = {**node, "inputs": [[where[e[0]], *e[1:]] for e in node.get("inputs", [])]}
        start = len(nodes)
        for new in _replacement(node, train):
            new["inputs"] = [[start + int(e[1:]), 0, 0] if isinstance(e, str) else e for e in new["inputs"]]
            nodes.append(new)
        where[index] = len(nodes) - 1
    out = {"nodes": nodes, "arg_nodes": [i for i, n in enumerate(nodes) if n.get("op") == "null"],
           "heads": [[where[h[0]], *h[1:]] for h in graph["heads"]]}
    if "attrs" in graph:
        out["attrs"] = graph["attrs"]
    return json.dumps(out)


def fixed_parameters(symbol_json: str) -> dict[str, str]:
    """{parameter: why} for the parameters MXNet never trains (BatchNorm's gamma with ``fix_gamma``)."""
    graph = json.loads(symbol_json)
    nodes = graph["nodes"]
    fixed = {}
    for node in nodes:
        if node.get("op") == "BatchNorm" and _true(node.get("attrs", {}).get("fix_gamma", True)):
            gamma = nodes[node["inputs"][1][0]]["name"]
            fixed[gamma] = f"fixed to 1 in MXNet ({node['name']}: BatchNorm fix_gamma=True)"
    return fixed


def consumers(symbol_json: str) -> dict[str, tuple[str, str]]:
    """{variable: (name, op) of the first node that reads it}, to name the layer of a parameter."""
    nodes = json.loads(symbol_json)["nodes"]
    found: dict[str, tuple[str, str]] = {}
    for node in nodes:
        if node.get("op") == "null":
            continue
        for entry in node.get("inputs", []):
            source = nodes[entry[0]]
            if source.get("op") == "null":
                found.setdefault(source["name"], (node["name"], node["op"]))
    return found


@dataclass
class MXNetGradientResult:
    """One forward + backward: outputs (model order), parameter and input gradients (MXNet names)."""

    outputs: list[np.ndarray]
    param_grads: dict[str, np.ndarray]
    input_grads: dict[str, np.ndarray]
    loss: float
    aux_after: dict[str, np.ndarray]  # auxiliary states after the forward (train mode: moved statistics)


class MXNetGradients:
    """A symbol and its parameters, ready to give the loss and its gradients in eval or train mode."""

    def __init__(self, symbol: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any], *,
                 train: bool = False) -> None:
        self.mx = import_mxnet()
        source_json = symbol if isinstance(symbol, str) else symbol.tojson()
        self.train = train
        self.symbol_json = gradient_symbol_json(source_json, train=train)
        self.symbol = self.mx.sym.load_json(self.symbol_json)
        self.consumers = consumers(source_json)
        self.fixed = fixed_parameters(source_json)
        self.arg_params = {k: to_numpy(v) for k, v in arg_params.items()}
        self.aux_params = {k: to_numpy(v) for k, v in aux_params.items()}
        original = json.loads(source_json)
        labels = set(label_inputs(original["nodes"], heads=original["heads"]))
        params = set(self.arg_params) | set(self.aux_params)
        self.input_names = [n for n in self.symbol.list_arguments() if n not in params and n not in labels]
        self.param_names = [n for n in self.symbol.list_arguments() if n in self.arg_params]
        self.output_names = list(self.symbol.list_outputs())
        self.dropouts = [n["name"] for n in original["nodes"] if n.get("op") == "Dropout"]
        self.input_grads = True  # off when MXNet refuses a gradient for an input
        self.no_input_grads = ""
        self._loss_executor: Optional[Any] = None  # bound once (float64) for the many finite-difference runs

    def _bind(self, inputs: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray], dtype: str,
              with_grads: bool, aux_params: Optional[Mapping[str, np.ndarray]] = None, input_grads: bool = True):
        mx = self.mx
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ShapeError(f"mxnet gradients: no value given for input(s) {', '.join(missing)}")
        # float inputs in the computation's dtype; integer inputs (indices) keep theirs and get no gradient
        args = {n: mx.nd.array(inputs[n], dtype=dtype if np.asarray(inputs[n]).dtype.kind == "f"
                               else np.asarray(inputs[n]).dtype) for n in self.input_names}
        args.update({n: mx.nd.array(params[n], dtype=dtype) for n in self.param_names})
        aux_params = self.aux_params if aux_params is None else aux_params
        aux = {n: mx.nd.array(aux_params[n], dtype=dtype) for n in self.symbol.list_auxiliary_states()}
        grads = ({n: mx.nd.zeros(a.shape, dtype=dtype) for n, a in args.items()
                  if a.dtype == np.dtype(dtype) and (input_grads or n not in self.input_names)}
                 if with_grads else None)
        req = {n: "write" if grads is not None and n in grads else "null" for n in args}
        try:
            with _plain_mxnet_executor():
                return self.symbol.bind(mx.cpu(), args=args, args_grad=grads, grad_req=req, aux_states=aux), grads
        except Exception as exc:
            raise ConversionFailure(f"MXNet failed to bind the model for gradients: "
                                    f"{' '.join(str(exc).split())[:300]}") from exc

    def gradients(self, inputs: Mapping[str, np.ndarray], weights: Sequence[np.ndarray], *,
                  params: Optional[Mapping[str, np.ndarray]] = None, aux: Optional[Mapping[str, np.ndarray]] = None,
                  dtype: str = "float32") -> MXNetGradientResult:
        """Forward (``is_train=True``) and backward of ``sum(out_i * weights_i)``, from ``params`` and
        ``aux`` (default: the model's own). When MXNet refuses a gradient for an input (Embedding's
        float indices), input gradients are left out from then on (``no_input_grads`` says why)."""
        try:
            return self._gradients(inputs, weights, params, aux, dtype)
        except Exception as exc:
            if not self.input_grads or not self.input_names:
                raise
            self.input_grads = False
            self.no_input_grads = f"MXNet computes none ({' '.join(str(exc).split()[-12:])})"
            log.info("input gradients off: %s", self.no_input_grads)
            return self._gradients(inputs, weights, params, aux, dtype)

    def _gradients(self, inputs: Mapping[str, np.ndarray], weights: Sequence[np.ndarray],
                   params: Optional[Mapping[str, np.ndarray]], aux: Optional[Mapping[str, np.ndarray]],
                   dtype: str) -> MXNetGradientResult:
        mx = self.mx
        executor, grads = self._bind(inputs, params or self.arg_params, dtype, True, aux, self.input_grads)
        outputs = executor.forward(is_train=True)
        executor.backward([mx.nd.array(w, dtype=dtype) for w in weights])
        values = [o.asnumpy() for o in outputs]
        loss = float(sum(np.sum(v.astype(np.float64) * w) for v, w in zip(values, weights)))
        assert grads is not None
        return MXNetGradientResult(values, {n: grads[n].asnumpy() for n in self.param_names},
                                   {n: grads[n].asnumpy() for n in self.input_names if n in grads}, loss,
                                   {n: v.asnumpy() for n, v in executor.aux_dict.items()})

    def loss(self, inputs: Mapping[str, np.ndarray], weights: Sequence[np.ndarray], *,
             params: Optional[Mapping[str, np.ndarray]] = None, dtype: str = "float64") -> float:
        """The loss alone (a training forward, so batch statistics in train mode), for finite differences.

        One executor serves every call of a dtype: binding costs far more than the forward."""
        params = params or self.arg_params
        if self._loss_executor is None or self._loss_executor[0] != dtype:
            self._loss_executor = (dtype, self._bind(inputs, params, dtype, False)[0])
        executor = self._loss_executor[1]
        for name in self.input_names:
            executor.arg_dict[name][:] = np.asarray(inputs[name], dtype=executor.arg_dict[name].dtype)
        for name in self.param_names:
            executor.arg_dict[name][:] = np.asarray(params[name], dtype=dtype)
        for name, value in executor.aux_dict.items():  # a training forward moves the statistics
            value[:] = np.asarray(self.aux_params[name], dtype=dtype)
        outputs = executor.forward(is_train=True)
        return float(sum(np.sum(o.asnumpy().astype(np.float64) * np.asarray(w, np.float64))
                         for o, w in zip(outputs, weights)))
