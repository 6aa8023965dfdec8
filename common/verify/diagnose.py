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
    reference = ort_runner.run(_rename_inputs(inputs, ort_runner.input_names), intermediates=True)
    candidate = torch_runner.run(_rename_inputs(inputs, torch_runner.input_names), intermediates=True)
    return locate(onnx_model, reference.all_tensors(), candidate.all_tensors(), rtol=rtol, atol=atol)


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
    candidate = ort_runner.run(_rename_inputs(inputs, ort_runner.input_names), intermediates=True)
    origins = mxnet_origins(json.loads(mx_runner.symbol.tojson()), tensor_map)
    return locate(onnx_model, reference.intermediates, candidate.all_tensors(), rtol=rtol, atol=atol, origins=origins)


def _rename_inputs(inputs: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """Inputs by ``names``: by name where they match, else by position."""
    if all(n in inputs for n in names):
        return {n: inputs[n] for n in names}
    values = list(inputs.values())
    return {n: values[i] for i, n in enumerate(names) if i < len(values)}
