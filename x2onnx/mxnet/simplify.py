"""onnx-simplifier after export, never fatal: on any failure the exported model is kept as it is.

BatchNormalization is not folded into the Conv before it: the folded Conv would keep the Conv's
output name for a new value, and the export would no longer hold MXNet's convolution and
BatchNorm outputs for the locator to compare layer by layer. Runtimes fold it when they load the
model (onnxruntime, TensorRT, and ``onnx2x torch`` after conversion), so nothing is lost there.
"""
from __future__ import annotations

import logging

import onnx

log = logging.getLogger(__name__)


def _interface(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits], [o.name for o in model.graph.output]


def simplify_model(model: onnx.ModelProto, *, label: str = "model") -> onnx.ModelProto:
    """The onnxsim-simplified model, or ``model`` itself with one warning line."""
    try:
        import onnxsim
    except ImportError:
        log.warning("%s: onnxsim is not installed; keeping the model unsimplified", label)
        return model
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0, skip_fuse_bn=True)
    except Exception as exc:  # noqa: BLE001 - onnxsim raises anything from its C++ core
        log.warning("%s: onnxsim failed (%s); keeping the model unsimplified", label, " ".join(str(exc).split())[:200])
        return model
    if not ok or _interface(simplified) != _interface(model):
        log.warning("%s: onnxsim changed the model's interface; keeping the model unsimplified", label)
        return model
    return simplified
