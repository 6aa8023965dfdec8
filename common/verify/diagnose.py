"""One call per conversion direction: run source and result with intermediates, then locate.

These are what ``--debug`` of ``x2onnx`` and ``onnx2x`` (and the round trip) call when final
outputs differ. The converters' products are passed in; nothing here imports a converter.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping, Optional

import onnx

from .locator import LocatorResult, locate, mxnet_origins
from .runners import MXNetRunner, OnnxRuntimeRunner, TorchRunner, mxnet_tensor_map

log = logging.getLogger(__name__)


def diagnose_onnx_to_torch(
    onnx_model: onnx.ModelProto,
    module: Any,
    inputs: Mapping[str, Any],
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
) -> LocatorResult:
    """First node where the PyTorch module departs from onnxruntime on ``onnx_model``.

    ``onnx_model`` must be the graph the module was built from (for ``onnx2x.torch`` that is the
    model after its simplify step: ``onnx2x.torch.convert.prepare``), since tensors are matched
    by ONNX name through ``module.onnx_value_to_fx``.
    """
    ort_runner, torch_runner = OnnxRuntimeRunner(onnx_model), TorchRunner(module)
    feeds = _rename_inputs(inputs, torch_runner.input_names)
    reference = ort_runner.run(_rename_inputs(inputs, ort_runner.input_names), intermediates=True).all_tensors()
    candidate = torch_runner.run(feeds, intermediates=True).all_tensors()
    local = _forced(torch_runner, feeds, reference, candidate)
    result = locate(onnx_model, reference, candidate, rtol=rtol, atol=atol, local=local)
    if result.divergence is not None and local is not None:
        from .arbiter import arbitrate

        known = {**_rename_inputs(inputs, ort_runner.input_names), **reference}
        result.arbitration = arbitrate(onnx_model, [result.divergence.key] + result.also[:20], known, local,
                                       rtol=rtol, atol=atol)
    return result


def _forced(runner: Any, inputs: Mapping[str, Any], reference: Mapping[str, Any],
            candidate: Mapping[str, Any]) -> Optional[dict]:
    """The candidate's values recomputed from the reference's (None when that run fails: the
    locator then falls back to comparing propagated values)."""
    try:
        return runner.run_forced(inputs, {k: v for k, v in reference.items() if k in candidate}, candidate)
    except Exception as exc:  # diagnosis must never hide the failure it explains
        log.warning("teacher-forced run failed (%s); locating by propagated values", exc)
        return None


def diagnose_mxnet_to_onnx(
    symbol: Any,
    arg_params: Any,
    aux_params: Optional[Mapping[str, Any]],
    onnx_model: onnx.ModelProto,
    inputs: Mapping[str, Any],
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
) -> LocatorResult:
    """First ONNX node whose output departs from MXNet's matching internal output.

    MXNet tensors are renamed with the exporter's map (model metadata ``x2onnx.mxnet_tensor_map``);
    without that map nothing can be matched and the result says so.
    """
    tensor_map = mxnet_tensor_map(onnx_model)
    if not tensor_map:
        log.warning("the ONNX model carries no %s metadata: MXNet tensors cannot be matched to ONNX ones",
                    "x2onnx.mxnet_tensor_map")
    mx_runner = MXNetRunner(symbol, arg_params, aux_params, tensor_map=tensor_map)
    mx_inputs = _rename_inputs(inputs, mx_runner.input_names)
    reference = mx_runner.run(mx_inputs, intermediates=True)
    ort_runner = OnnxRuntimeRunner(onnx_model)
    feeds = _rename_inputs(inputs, ort_runner.input_names)
    # only the tensors MXNet has values for: every tensor of a detector at once takes gigabytes
    candidate = ort_runner.run(feeds, intermediates=set(reference.intermediates) or True).all_tensors()
    local = _forced(ort_runner, feeds, reference.intermediates, candidate)
    origins = mxnet_origins(json.loads(mx_runner.symbol.tojson()), tensor_map)
    return locate(onnx_model, reference.intermediates, candidate, rtol=rtol, atol=atol, origins=origins, local=local)


def _rename_inputs(inputs: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """Inputs by ``names``: by name where they match, else by position."""
    if all(n in inputs for n in names):
        return {n: inputs[n] for n in names}
    values = list(inputs.values())
    return {n: values[i] for i, n in enumerate(names) if i < len(values)}
