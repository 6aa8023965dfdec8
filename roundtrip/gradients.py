"""The PyTorch side of the gradient check: the trainable converted module, its gradients, and the
check against MXNet (:mod:`common.verify.mxnet_gradients`, judged by :mod:`common.verify.gradients`).

``check_mxnet_gradients`` converts the exported ONNX model into a trainable module, backpropagates
the seeded loss in both frameworks, maps every torch parameter back to its MXNet name and compares
the gradients, in eval mode (global statistics) and, when the model has BatchNorm, in train mode
(batch statistics). :func:`sgd_steps` runs a few plain SGD steps in both frameworks from the same
weights (the test of "fine-tuning in PyTorch continues what MXNet would have done").
"""
from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx

from common.errors import ConversionFailure
from common.verify.compare import compare_arrays
from common.verify.gradients import (DIFFERS, OK, GradientEntry, GradientReport, ParamMatch, judge_gradients,
                                     loss_weights, match_parameters)
from common.verify.mxnet_gradients import MXNetGradients

log = logging.getLogger(__name__)

EVAL, TRAIN = "eval", "train"


def trainable_module(model: onnx.ModelProto, *, input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
                     simplify: bool = True, train: bool = False) -> Any:
    """``onnx2x.torch.convert(trainable=True)`` in ``train``/``eval`` mode; in train mode with every
    Dropout at ratio 0 (:func:`without_dropout`)."""
    convert = importlib.import_module("onnx2x.torch.convert").convert
    shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()} or None
    gm = convert(model, simplify=simplify, input_shapes=shapes, trainable=True)
    if train:
        without_dropout(gm)
    gm.train(train)
    return gm


def without_dropout(gm: Any) -> int:
    """Set every Dropout of ``gm`` to ratio 0 (in place; how many): MXNet's and PyTorch's random masks
    cannot agree, so the train-mode check compares the deterministic part (MXNet's Dropout is
    replaced by the identity the same way, :func:`common.verify.mxnet_gradients.gradient_symbol_json`)."""
    count = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and getattr(node.target, "__name__", "") == "dropout" and len(node.args) > 1:
            node.args = (node.args[0], 0.0, *node.args[2:])
            count += 1
    if count:
        gm.recompile()
    return count


@dataclass
class TorchGradients:
    outputs: list[np.ndarray]
    param_grads: dict[str, Optional[np.ndarray]]  # attribute -> gradient (None: not reached)
    input_grads: dict[str, Optional[np.ndarray]]


def torch_loss(gm: Any, inputs: Sequence[Any], weights: Sequence[np.ndarray]) -> tuple[Any, list[Any]]:
    """``sum(out_i * weight_i)`` of the module on ``inputs`` (tensors), and its outputs."""
    import torch

    out = gm(*inputs)
    outputs = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(outputs) != len(weights):
        raise ConversionFailure(f"the PyTorch module has {len(outputs)} outputs; MXNet has {len(weights)}")
    loss = sum((o * torch.from_numpy(w)).sum() for o, w in zip(outputs, weights))
    return loss, outputs


def torch_gradients(gm: Any, inputs: Mapping[str, np.ndarray], weights: Sequence[np.ndarray]) -> TorchGradients:
    """Forward and backward of the seeded loss; gradients by attribute and by input name."""
    import torch

    names = list(getattr(gm, "onnx_input_names", None) or list(inputs))
    values = list(inputs.values())
    arrays = [np.asarray(inputs[n] if n in inputs else values[i]) for i, n in enumerate(names)]
    feeds = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    for p in gm.parameters():
        p.grad = None
    loss, outputs = torch_loss(gm, feeds, weights)
    loss.backward()
    grads = {name: None if p.grad is None else p.grad.detach().numpy().copy() for name, p in gm.named_parameters()}
    in_grads = {n: None if t.grad is None else t.grad.numpy().copy() for n, t in zip(names, feeds)}
    return TorchGradients([o.detach().numpy() for o in outputs], grads, in_grads)


def param_matches(gm: Any, arg_params: Mapping[str, np.ndarray]) -> tuple[dict[str, ParamMatch], list[str]]:
    """{MXNet name: where it is in ``gm``} and the trainable attributes that map to no MXNet name."""
    onnx_names = dict(getattr(gm, "onnx_param_names", {}) or {})
    candidate = {name: (onnx_names.get(name, name), p.detach().numpy())
                 for name, p in gm.named_parameters() if p.requires_grad}
    return match_parameters(candidate, arg_params)


def backward_order(symbol_json: str, names: Sequence[str]) -> list[str]:
    """``names`` (variables) ordered by their first reader, the one nearest the outputs first."""
    nodes = json.loads(symbol_json)["nodes"]
    first: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.get("op") == "null":
            continue
        for entry in node.get("inputs", []):
            first.setdefault(nodes[entry[0]]["name"], index)
    return sorted(names, key=lambda n: -first.get(n, -1))


def has_batchnorm(symbol_json: str) -> bool:
    return any(n.get("op") == "BatchNorm" for n in json.loads(symbol_json)["nodes"])


def check_mxnet_gradients(symbol: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
                          onnx_model: onnx.ModelProto, inputs: Mapping[str, np.ndarray], *, seed: int = 0,
                          simplify: bool = True, modes: Optional[Sequence[str]] = None) -> list[GradientReport]:
    """Gradients of MXNet and of the trainable PyTorch conversion, compared by MXNet name.

    ``modes``: default eval, plus train when the symbol has BatchNorm.
    """
    symbol_json = symbol if isinstance(symbol, str) else symbol.tojson()
    if modes is None:
        modes = [EVAL, TRAIN] if has_batchnorm(symbol_json) else [EVAL]
    shapes = {n: tuple(np.shape(a)) for n, a in inputs.items()}
    reports = []
    for mode in modes:
        train = mode == TRAIN
        mx = MXNetGradients(symbol_json, arg_params, aux_params, train=train)
        gm = trainable_module(onnx_model, input_shapes=shapes, simplify=simplify, train=train)
        reports.append(_check_one(mode, mx, gm, inputs, seed))
    return reports


def _check_one(mode: str, mx: MXNetGradients, gm: Any, inputs: Mapping[str, np.ndarray], seed: int
               ) -> GradientReport:
    feeds = {n: np.asarray(inputs[n], np.float32) if np.asarray(inputs[n]).dtype.kind == "f" else inputs[n]
             for n in mx.input_names}
    weights = loss_weights(_output_shapes(mx, feeds), seed)
    ref = mx.gradients(feeds, weights)
    cand = torch_gradients(gm, feeds, weights)

    matches, unmatched = param_matches(gm, mx.arg_params)
    source_grads: dict[str, np.ndarray] = {}
    cand_grads: dict[str, Optional[np.ndarray]] = {}
    kinds, notes, skipped, points, attributes = {}, {}, {}, {}, {}
    for name in mx.param_names:
        kinds[name] = "parameter"
        source_grads[name] = ref.param_grads[name]
        points[name] = mx.arg_params[name]
        if name in mx.fixed:
            skipped[name] = mx.fixed[name]
            continue
        match = matches.get(name)
        if match is None:
            skipped[name] = "no PyTorch parameter under this name (renamed in conversion and no unique value match)"
            continue
        attributes[name] = match.attribute
        grad = cand.param_grads.get(match.attribute)
        # no gradient at all: the loss does not reach it in torch; MXNet's must then be zeros
        cand_grads[name] = (np.zeros_like(ref.param_grads[name]) if grad is None
                            else grad.reshape(ref.param_grads[name].shape))
        if match.how != "name" or match.attribute != name:
            notes[name] = f"torch attribute {match.attribute!r}, matched by {match.how}"
    torch_inputs = list(getattr(gm, "onnx_input_names", None) or mx.input_names)
    for i, name in enumerate(mx.input_names):
        if name not in ref.input_grads:  # integer input: no gradient
            continue
        kinds[name] = "input"
        source_grads[name] = ref.input_grads[name]
        points[name] = feeds[name]
        key = name if name in cand.input_grads else (torch_inputs[i] if i < len(torch_inputs) else name)
        grad = cand.input_grads.get(key)
        cand_grads[name] = np.zeros_like(ref.input_grads[name]) if grad is None else grad

    base = {**feeds, **mx.arg_params}

    def loss(name: str, values: np.ndarray) -> float:
        point = dict(base)
        point[name] = values
        return mx.loss({n: point[n] for n in mx.input_names}, weights,
                       params={n: point[n] for n in mx.param_names})

    order = backward_order(mx.symbol_json, mx.param_names) + [n for n in mx.input_names if n in ref.input_grads]
    report = judge_gradients(mode, source_grads, cand_grads, kinds=kinds, order=order,
                             layers=mx.consumers, notes=notes, skipped=skipped, loss=loss, points=points,
                             attributes=attributes)
    report.entries[:0] = _output_entries(mx, ref.outputs, cand.outputs)
    if mx.no_input_grads:
        report.notes.append(f"input gradients not compared: {mx.no_input_grads}")
    if mx.dropouts:
        report.notes.append(f"Dropout ({', '.join(mx.dropouts)}) compared switched off in both frameworks "
                            "(their random masks cannot agree)")
    for attr in unmatched:
        report.notes.append(f"torch parameter {attr!r} has no MXNet counterpart; its gradient is not compared")
    return report


def _output_entries(mx: MXNetGradients, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
                    ) -> list[GradientEntry]:
    """The forward outputs the loss was computed from (train mode: on batch statistics), compared
    first: when they differ, so will every gradient."""
    entries = []
    for name, ref, cand in zip(mx.output_names, reference, candidate):
        comparison = compare_arrays(ref, np.asarray(cand, dtype=ref.dtype), name=name)
        entries.append(GradientEntry(name, "output", status=OK if comparison.ok else DIFFERS, comparison=comparison))
    return entries


def _output_shapes(mx: MXNetGradients, feeds: Mapping[str, np.ndarray]) -> list[tuple[int, ...]]:
    _, out_shapes, _ = mx.symbol.infer_shape(**{n: np.shape(a) for n, a in feeds.items()})
    return [tuple(s) for s in out_shapes]


def sgd_steps(symbol: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any], gm: Any,
              batches: Sequence[Mapping[str, np.ndarray]], *, lr: float = 0.01, train: bool = False,
              seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Plain SGD (``w -= lr * grad`` of the seeded loss) on ``batches`` in MXNet and with
    ``torch.optim.SGD`` on ``gm``, from the same weights; then the weights by MXNet name, MXNet's
    and PyTorch's (reshaped to MXNet's shapes). In train mode the auxiliary states (BatchNorm's
    moving statistics) are carried from step to step and returned too, under their MXNet names."""
    import torch

    mx = MXNetGradients(symbol if isinstance(symbol, str) else symbol.tojson(), arg_params, aux_params, train=train)
    matches, _ = param_matches(gm, mx.arg_params)
    params = {n: v.copy() for n, v in mx.arg_params.items()}
    aux = {n: v.copy() for n, v in mx.aux_params.items()}
    gm.train(train)
    optimizer = torch.optim.SGD([p for p in gm.parameters() if p.requires_grad], lr=lr)
    weights = None
    for batch in batches:
        feeds = {n: np.asarray(batch[n], np.float32) for n in mx.input_names}
        if weights is None:
            weights = loss_weights(_output_shapes(mx, feeds), seed)
        result = mx.gradients(feeds, weights, params=params, aux=aux)
        for n in mx.param_names:
            if n not in mx.fixed:
                params[n] = params[n] - lr * result.param_grads[n]
        if train:
            aux.update(result.aux_after)
        optimizer.zero_grad()
        loss, _ = torch_loss(gm, [torch.from_numpy(feeds[n]) for n in mx.input_names], weights)
        loss.backward()
        optimizer.step()
    state = {**dict(gm.named_parameters()), **dict(gm.named_buffers())}
    torch_after = {n: state[m.attribute].detach().numpy().reshape(params[n].shape) for n, m in matches.items()}
    mxnet_after = {n: params[n] for n in matches}
    if train:
        onnx_names = {onnx: attr for attr, onnx in (getattr(gm, "onnx_param_names", {}) or {}).items()}
        for n, value in aux.items():
            attr = onnx_names.get(n, n)
            if attr in state:
                mxnet_after[n] = value
                torch_after[n] = state[attr].detach().numpy().reshape(value.shape)
    return mxnet_after, torch_after
