"""Check an exported model against MXNet on seeded inputs, by the project's verification criterion.

The reference is MXNet's *plain* executor: its default CPU executor applies oneDNN subgraph
fusion (conv+relu, conv+sum), which computes some graphs wrongly (a convolution whose raw output
feeds both a ReLU and an ``elemwise_add``, as pre-activation residual blocks have). The default
executor is run as well, and when the two disagree a warning names the output: the export is
never blamed for MXNet's own fusion. Outputs are judged by :mod:`common.verify.judge` (scale-aware,
detections as sets, widened by MXNet's own sensitivity when needed); on a failure the locator
names the MXNet node whose translation introduced the error (:mod:`common.verify.diagnose`).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx

from common.errors import ConversionFailure, VerificationError
from common.verify.compare import compare
from common.verify.diagnose import diagnose_mxnet_to_onnx
from common.verify.inputs import ImageOptions, mxnet_input_specs, prepare_inputs
from common.verify.mxnet_worker import run_without_onednn
from common.verify.rowsets import selection_groups
from common.verify.runners import MXNetRunner, OnnxRuntimeRunner
from common.verify.verdict import Verdict, judge_conversion

log = logging.getLogger(__name__)

REFERENCE = "MXNet"


def _mxnet_outputs(runner: MXNetRunner, names: Sequence[str], inputs: Mapping[str, np.ndarray]) -> dict:
    """MXNet's outputs keyed by the exported model's output names (the exporter keeps their order)."""
    try:
        values = list(runner.run(inputs).outputs.values())
    except ConversionFailure as exc:
        raise VerificationError(f"MXNet itself cannot run the model for the reference outputs ({exc.message[:200]}); "
                                "rerun with --no-verify to export without the check") from None
    if len(values) != len(names):
        raise VerificationError(f"the exported model has {len(names)} outputs, MXNet has {len(values)}")
    return dict(zip(names, values))


def _fusion_warnings(runner: MXNetRunner, plain: Mapping[str, np.ndarray], names: Sequence[str],
                     inputs: Mapping[str, np.ndarray], rtol: Optional[float], atol: Optional[float]) -> list[str]:
    """One line per output that MXNet's default (fused) executor computes differently from its plain one."""
    fused_runner = MXNetRunner(runner.symbol, runner.arg_params, runner.aux_params, fused=True)
    try:
        fused = dict(zip(names, fused_runner.run(inputs).outputs.values()))
    except ConversionFailure as exc:
        log.info("MXNet's default executor failed (%s); verified against the plain one", exc.message)
        return []
    lines = []
    for row in compare(plain, fused, rtol=rtol, atol=atol, check_dtype=False):
        if not row.ok:
            lines.append(f"MXNet's default CPU executor (oneDNN fusion) computes output {row.name} differently from "
                         f"its plain executor ({row.problem()}); verified against the plain executor, which "
                         "onnxruntime follows")
    return lines


def verify_model(model: onnx.ModelProto, sym: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
                 input_shapes: Mapping[str, Sequence[int]], input_dtypes: Optional[Mapping[str, Any]] = None, *,
                 tensor_map: Optional[Mapping[str, str]] = None, seed: int = 0, atol: Optional[float] = None,
                 rtol: Optional[float] = None, raise_on_failure: bool = True,
                 file: Optional[str] = None, input_files: Sequence[str] = (),
                 image: Optional[ImageOptions] = None) -> Verdict:
    """Run MXNet and onnxruntime on the same seeded inputs (or those ``input_files`` give, see
    :func:`common.verify.inputs.prepare_inputs`) and judge every output.

    ``atol``/``rtol`` default to the per-dtype values of :mod:`common.verify.compare`. Raises
    :class:`~common.errors.VerificationError` (naming the first divergent MXNet node) unless
    ``raise_on_failure`` is false.
    """
    specs = mxnet_input_specs(sym.tojson(), input_shapes, input_dtypes or {})
    inputs = prepare_inputs(specs, input_files, seed=seed, image=image).arrays  # random where no file gives one
    names = [o.name for o in model.graph.output]
    runner = MXNetRunner(sym, arg_params, aux_params)
    reference = _mxnet_outputs(runner, names, inputs)
    candidate = OnnxRuntimeRunner(model).run(inputs).outputs
    warnings = _fusion_warnings(runner, reference, names, inputs, rtol, atol)
    for line in warnings:
        log.warning("%s", line)

    def rerun(jittered: Mapping[str, np.ndarray]) -> dict:
        return dict(zip(names, runner.run(jittered).outputs.values()))

    def locate():
        if not tensor_map:
            raise ValueError("the model records no MXNet tensor map")
        return diagnose_mxnet_to_onnx(sym, arg_params, aux_params, model, inputs, rtol=rtol, atol=atol)

    def without_onednn() -> tuple[str, dict, str]:
        outputs = run_without_onednn(runner.symbol.tojson(), runner.arg_params, runner.aux_params, inputs)
        return ("MXNet without its oneDNN kernels", dict(zip(names, outputs)),
                "MXNet's oneDNN CPU kernels depart from the operators' definitions here (its GPU and other CPU "
                "kernels follow them; run MXNet with MXNET_MKLDNN_ENABLED=0 to see)")

    verdict = judge_conversion(reference, [candidate[n] for n in names], reference_name=REFERENCE, inputs=inputs,
                               seed=seed, rtol=rtol, atol=atol, row_groups=selection_groups(model),
                               rerun_reference=rerun, locate=locate, warnings=warnings,
                               second_opinion=without_onednn)
    for line in verdict.lines():
        log.info("verify: %s", line)
    for line in verdict.notes + ([verdict.overruled] if verdict.overruled else []):
        log.warning("%s", line)
    if not verdict.ok and raise_on_failure:
        raise verdict.error(file)
    return verdict
