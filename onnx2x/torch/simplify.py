"""onnx-simplifier as a first pass, never fatal: on any failure the original model is used."""
from __future__ import annotations

import logging
from typing import Optional

import onnx

log = logging.getLogger(__name__)


def _interface(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    inits = {t.name for t in model.graph.initializer}
    return ([i.name for i in model.graph.input if i.name not in inits], [o.name for o in model.graph.output])


def simplify(
    model: onnx.ModelProto,
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None,
    *,
    label: str = "",
) -> onnx.ModelProto:
    """Return the onnxsim-simplified model, or ``model`` itself with a one-line warning."""
    try:
        import onnxsim
    except ImportError:
        log.warning("%s: onnxsim is not installed; converting the model as it is", label or "model")
        return model
    kwargs = {}
    if input_shapes:
        kwargs["overwrite_input_shapes"] = {k: list(v) for k, v in input_shapes.items()}
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0, **kwargs)
    except Exception as exc:  # onnxsim raises anything from its C++ core
        log.warning("%s: onnxsim failed (%s); converting the original model", label or "model",
                    " ".join(str(exc).split())[:200])
        return model
    if not ok:
        log.warning("%s: onnxsim could not validate its result; converting the original model", label or "model")
        return model
    if _interface(simplified) != _interface(model):
        log.warning("%s: onnxsim would change the model's inputs or outputs; converting the original model",
                    label or "model")
        return model
    return simplified
