"""The default check of a conversion: the PyTorch module against onnxruntime on seeded random inputs.

Why by default: a converter bug shows up as silently wrong numbers, so ``onnx2x torch`` runs the
converted module and onnxruntime on the same inputs and refuses to write a model whose outputs
differ (:class:`VerificationError`, exit 3). When onnxruntime itself cannot load or run the model
(an IR version or opset newer than it knows, an op it lacks, string inputs) there is no reference:
the check is skipped with a warning instead of failing the conversion.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import onnx
import torch

from common.errors import VerificationError

log = logging.getLogger(__name__)

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4


@dataclass
class CheckResult:
    """What the check did: ``skipped`` with a reason, or the worst difference it saw."""

    skipped: bool = False
    reason: str = ""
    max_abs_diff: float = 0.0
    outputs: list[str] = field(default_factory=list)


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    inits = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in inits]


def random_inputs(
    proto: onnx.ModelProto, input_shapes: Optional[dict[str, Sequence[int]]] = None, seed: int = 0
) -> list[np.ndarray]:
    """Seeded inputs in the model's declared shapes, in graph order.

    Drawn by ``common.verify.inputs`` (which keeps index-like inputs within the sizes their
    consumers allow); symbolic dimensions not fixed by ``input_shapes`` are 1. Raises
    ``ValueError`` for inputs that cannot be generated (sequences, strings, unknown rank).
    """
    from common.errors import ShapeError
    from common.verify.inputs import random_inputs as draw, specs_from_onnx

    names = [v.name for v in graph_inputs(proto)]
    if any(not v.type.HasField("tensor_type") for v in graph_inputs(proto)):
        raise ValueError("the model has non-tensor inputs, which the check cannot generate")
    try:
        specs = specs_from_onnx(proto, input_shapes)
        for spec in specs:
            if spec.shape is not None:
                spec.shape = tuple(d if isinstance(d, int) and d >= 0 else 1 for d in spec.shape)
            if spec.dtype in ("object", "str", "bfloat16") or spec.dtype.startswith(("str", "<U", "|S", "float8")):
                raise ValueError(f"input {spec.name!r} has type {spec.dtype}, which the check cannot generate")
        drawn = draw(specs, seed)
    except ShapeError as exc:
        raise ValueError(exc.message) from exc
    return [drawn[n] for n in names]


def onnxruntime_outputs(proto: onnx.ModelProto, feeds: Sequence[np.ndarray]) -> tuple[Optional[list[Any]], str]:
    """(outputs, "") from onnxruntime, or (None, why) when it refuses the model or the inputs."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed"
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for every refusal
        return None, f"onnxruntime cannot load the model ({_short(exc)})"
    names = [i.name for i in sess.get_inputs()]
    try:
        outs = sess.run(None, dict(zip(names, feeds)))
    except Exception as exc:
        return None, f"onnxruntime cannot run the model on random inputs ({_short(exc)})"
    return outs, ""


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def to_numpy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, (list, tuple)):
        return [to_numpy(o) for o in obj]
    return obj


def compare(expected: Any, actual: Any, rtol: float, atol: float) -> tuple[Optional[str], float]:
    """(None, max diff) when equal within tolerance, else (one-line reason, max diff)."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"expected a sequence of {len(expected)}, got {type(actual).__name__}", float("inf")
        worst = 0.0
        for k, (e, a) in enumerate(zip(expected, actual)):
            msg, diff = compare(e, a, rtol, atol)
            if msg:
                return f"[{k}] {msg}", diff
            worst = max(worst, diff)
        return None, worst
    exp, act = np.asarray(expected), np.asarray(actual)
    if exp.shape != act.shape:
        return f"shape {act.shape} != onnxruntime's {exp.shape}", float("inf")
    if exp.dtype != act.dtype:
        return f"dtype {act.dtype} != onnxruntime's {exp.dtype}", float("inf")
    if exp.size == 0:
        return None, 0.0
    if exp.dtype.kind in "fc":
        e, a = exp.astype(np.complex128 if exp.dtype.kind == "c" else np.float64), act.astype(np.complex128 if exp.dtype.kind == "c" else np.float64)
        with np.errstate(invalid="ignore"):
            diff = np.abs(a - e)
        both_nan = np.isnan(e) & np.isnan(a)
        same_inf = np.isinf(e) & (a == e)
        diff = np.where(both_nan | same_inf, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        worst = float(diff.max())
        bad = diff > atol + rtol * np.abs(np.where(np.isfinite(e), e, 0))
        if bad.any():
            return (f"max abs diff {worst:.3g} ({int(bad.sum())} of {bad.size} elements beyond "
                    f"rtol {rtol:g}, atol {atol:g})"), worst
        return None, worst
    if not np.array_equal(exp, act):
        return f"{int(np.sum(exp != act))} of {exp.size} elements differ", float("inf")
    return None, 0.0


def check_module(
    module: torch.nn.Module,
    proto: onnx.ModelProto,
    *,
    input_shapes: Optional[dict[str, Sequence[int]]] = None,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    label: str = "",
    debug_gm: Optional[torch.fx.GraphModule] = None,
    debug_proto: Optional[onnx.ModelProto] = None,
) -> CheckResult:
    """Run ``module`` and onnxruntime on the same seeded inputs; raise on any difference.

    ``proto`` is the reference model (the one the user gave). With ``debug_gm`` and
    ``debug_proto`` (the converted GraphModule and the ONNX model it was built from), a mismatch
    also names the first ONNX value whose PyTorch counterpart diverges.
    """
    where = label or proto.graph.name or "model"
    try:
        feeds = random_inputs(proto, input_shapes, seed)
    except ValueError as exc:
        return _skip(where, str(exc))
    expected, why = onnxruntime_outputs(proto, feeds)
    if expected is None:
        return _skip(where, why)
    try:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.array(f, copy=True)) for f in feeds])
    except Exception as exc:
        raise VerificationError(f"the converted module fails on inputs onnxruntime accepts ({_short(exc)})",
                                file=label or None) from exc
    actual = list(out) if isinstance(out, tuple) else [out]
    names = [o.name for o in proto.graph.output]
    if len(actual) != len(expected):
        raise VerificationError(f"the converted module returns {len(actual)} outputs, onnxruntime {len(expected)}",
                                file=label or None)
    result = CheckResult(outputs=names)
    for name, e, a in zip(names, expected, actual):
        msg, diff = compare(e, to_numpy(a), rtol, atol)
        result.max_abs_diff = max(result.max_abs_diff, diff)
        if msg:
            text = f"output {name!r} differs from onnxruntime: {msg}"
            if debug_gm is not None and debug_proto is not None:
                located = first_divergence(debug_gm, debug_proto, feeds, rtol, atol)
                if located:
                    text += f"; {located}"
            raise VerificationError(text, file=label or None)
    log.info("%s: outputs match onnxruntime (max abs diff %.3g)", where, result.max_abs_diff)
    return result


def _skip(where: str, why: str) -> CheckResult:
    log.warning("%s: verification skipped: %s", where, why)
    return CheckResult(skipped=True, reason=why)


def first_divergence(
    gm: torch.fx.GraphModule, proto: onnx.ModelProto, feeds: Sequence[np.ndarray], rtol: float, atol: float
) -> Optional[str]:
    """Where the module first departs from onnxruntime (``common.verify``'s locator), or None.

    ``proto`` must be the graph ``gm`` was built from. The full report goes to the log; the
    returned line names the node.
    """
    from common.verify.diagnose import diagnose_onnx_to_torch

    names = [v.name for v in graph_inputs(proto)]
    try:
        result = diagnose_onnx_to_torch(proto, gm, dict(zip(names, feeds)), rtol=rtol, atol=atol)
    except Exception as exc:  # diagnosis is a help on top of the failure: never replace it
        return f"cannot locate the divergent node: {_short(exc)}"
    text = result.describe()
    log.error("%s", text)
    return text.splitlines()[0] if text else None
