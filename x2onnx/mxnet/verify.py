"""Check an exported model against MXNet: seeded random inputs, max-abs/relative error per output.

A small direct check (MXNet executor vs onnxruntime) that raises :class:`VerificationError`
naming the first divergent node when an output is out of tolerance. The first divergent node
is found through the tensor map the exporter records (MXNet internal output name -> ONNX tensor
name): every mapped intermediate is compared in MXNet's topological order. The shape of this
module (inputs -> two runners -> comparison -> locator) follows ``common.verify`` so it can
delegate there once that engine is settled.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx

from common.errors import VerificationError

log = logging.getLogger(__name__)

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass
class OutputCheck:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    bad: int
    ok: bool

    def line(self) -> str:
        return f"{self.name} {self.shape}: max-abs {self.max_abs:.3g}, relative {self.max_rel:.3g}" + (
            "" if self.ok else f" ({self.bad} elements out of tolerance)")


@dataclass
class VerifyReport:
    outputs: list[OutputCheck]
    atol: float
    rtol: float
    seed: int
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    first_divergent: Optional[str] = None

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def summary(self) -> str:
        return "; ".join(o.line() for o in self.outputs)


def random_inputs(shapes: Mapping[str, Sequence[int]], dtypes: Mapping[str, Any],
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform [-1, 1] floats (a normalised image's range); small non-negative integers for int inputs."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        dtype = np.dtype(dtypes.get(name, np.float32))
        if dtype.kind == "f":
            out[name] = rng.uniform(-1.0, 1.0, size=tuple(shape)).astype(dtype)
        else:  # booleans and integers (indices, masks): 0 and 1 are valid for any of them
            out[name] = rng.integers(0, 2, size=tuple(shape)).astype(dtype)
    return out


def compare_output(name: str, got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> OutputCheck:
    got = np.asarray(got)
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return OutputCheck(name, tuple(got.shape), float("inf"), float("inf"), int(ref.size), False)
    if ref.size == 0:
        return OutputCheck(name, tuple(ref.shape), 0.0, 0.0, 0, True)
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    diff = np.abs(g - r)
    both_nan = np.isnan(g) & np.isnan(r)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    bad = int(np.count_nonzero(diff > atol + rtol * np.abs(r)))
    max_abs = float(diff.max())
    scale = float(np.nanmax(np.abs(r))) if np.isfinite(r).any() else 1.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return OutputCheck(name, tuple(ref.shape), max_abs, max_rel, bad, bad == 0)


# ----------------------------------------------------------------------------- runners

def _bind(sym: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray]):
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    known = {k: v.shape for k, v in inputs.items()}
    arg_names = sym.list_arguments()
    known.update({k: v.shape for k, v in arg_params.items() if k in arg_names})
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(**known)
    args = {}
    for name, shape in zip(arg_names, arg_shapes):
        if name in inputs:
            args[name] = mx.nd.array(inputs[name], dtype=inputs[name].dtype)
        elif name in arg_params:
            args[name] = arg_params[name]
        else:  # a label or other training-only argument: zeros, never read at inference
            args[name] = mx.nd.zeros(shape or (1,))
    aux = {n: aux_params[n] if n in aux_params else mx.nd.zeros(s)
           for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    return sym.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")


def run_mxnet(sym: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
              inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """MXNet's reference outputs; MXNet's own failures (e.g. no CPU kernel) become one clean line."""
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    try:
        executor = _bind(sym, arg_params, aux_params, inputs)
        return [o.asnumpy() for o in executor.forward(is_train=False)]
    except mx.base.MXNetError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "Check failed" in ln or "Error" in ln), "")
        raise VerificationError(
            f"MXNet itself cannot run the model for the reference outputs ({first[:200] or 'MXNetError'}); "
            "rerun with --no-verify to export without the check") from exc


def ort_session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        text = " ".join(str(exc).split())[:300]
        raise VerificationError(f"onnxruntime cannot load the exported model: {text}") from None


def run_onnxruntime(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    session = ort_session(model)
    try:
        return session.run(None, dict(inputs))
    except Exception as exc:  # noqa: BLE001
        text = " ".join(str(exc).split())[:300]
        node = re.search(r"node\. Name:'([^']*)'", text)
        raise VerificationError(f"onnxruntime failed to run the exported model: {text}",
                                node=node.group(1) if node else None) from None


# ----------------------------------------------------------------------------- locator

def _node_of(mx_name: str) -> str:
    return re.sub(r"_output\d*$", "", mx_name)


def mxnet_internals(sym: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
                    inputs: Mapping[str, np.ndarray], wanted: set[str]) -> dict[str, np.ndarray]:
    """Internal outputs of one MXNet forward, caught with the executor's monitor callback.

    (Binding a ``Group`` of internals instead fails: its argument list repeats names.)
    """
    import ctypes

    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    from mxnet.base import NDArrayHandle

    captured: dict[str, np.ndarray] = {}

    def monitor(name: Any, handle: Any) -> None:
        key = name.decode() if isinstance(name, bytes) else str(name)
        if key in wanted and key not in captured:
            array = mx.nd.NDArray(ctypes.cast(handle, NDArrayHandle), writable=False)
            captured[key] = array.asnumpy()

    # MKL-DNN's subgraph fusion renames and merges nodes (conv+relu -> sg_mkldnn_conv_act_0):
    # bind without it so every MXNet node reports its own output
    from .loading import native_stderr_to_log

    previous = os.environ.get("MXNET_SUBGRAPH_BACKEND")
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
    try:
        with native_stderr_to_log():
            executor = _bind(sym, arg_params, aux_params, inputs)
            executor.set_monitor_callback(monitor, monitor_all=False)
            executor.forward(is_train=False)
            mx.nd.waitall()
    finally:
        if previous is None:
            os.environ.pop("MXNET_SUBGRAPH_BACKEND", None)
        else:
            os.environ["MXNET_SUBGRAPH_BACKEND"] = previous
    return captured


def locate_first_divergence(model: onnx.ModelProto, sym: Any, arg_params: Mapping[str, Any],
                            aux_params: Mapping[str, Any], inputs: Mapping[str, np.ndarray],
                            tensor_map: Mapping[str, str], atol: float,
                            rtol: float) -> Optional[tuple[str, str, OutputCheck]]:
    """``(MXNet node, op, figures)`` of the first mapped tensor out of tolerance, in MXNet's order."""
    produced = {o for n in model.graph.node for o in n.output}
    internals = sym.get_internals()
    order = [n for n in internals.list_outputs() if tensor_map.get(n) in produced]
    if not order:
        return None
    captured = mxnet_internals(sym, arg_params, aux_params, inputs, set(order))
    order = [n for n in order if n in captured]
    reference = [captured[n] for n in order]
    existing = {o.name for o in model.graph.output}
    extra = [tensor_map[n] for n in order if tensor_map[n] not in existing]
    count = len(model.graph.output)
    try:
        for name in dict.fromkeys(extra):
            model.graph.output.add().name = name
        session = ort_session(model)
        names = [tensor_map[n] for n in order]
        got = session.run(list(dict.fromkeys(names)), dict(inputs))
        values = dict(zip(dict.fromkeys(names), got))
    finally:
        del model.graph.output[count:]
    ops = {node["name"]: node["op"] for node in json.loads(sym.tojson())["nodes"]}
    for mx_name, ref in zip(order, reference):
        check = compare_output(tensor_map[mx_name], values[tensor_map[mx_name]], ref, atol, rtol)
        if not check.ok:
            node = _node_of(mx_name)
            return node, ops.get(node, "?"), check
    return None


# ----------------------------------------------------------------------------- entry point

def verify_model(model: onnx.ModelProto, sym: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
                 input_shapes: Mapping[str, Sequence[int]], input_dtypes: Optional[Mapping[str, Any]] = None, *,
                 tensor_map: Optional[Mapping[str, str]] = None, seed: int = 0, atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL, raise_on_failure: bool = True) -> VerifyReport:
    """Run MXNet and onnxruntime on the same seeded random inputs and compare every output."""
    inputs = random_inputs(input_shapes, input_dtypes or {}, seed)
    reference = run_mxnet(sym, arg_params, aux_params, inputs)
    got = run_onnxruntime(model, inputs)
    names = [o.name for o in model.graph.output]
    if len(got) != len(reference):
        raise VerificationError(f"the exported model has {len(got)} outputs, MXNet has {len(reference)}")
    checks = [compare_output(n, g, r, atol, rtol) for n, g, r in zip(names, got, reference)]
    report = VerifyReport(checks, atol, rtol, seed, {k: tuple(v) for k, v in input_shapes.items()})
    for check in checks:
        log.info("verify: %s", check.line())
    if report.ok or not raise_on_failure:
        return report
    first_bad = next(c for c in checks if not c.ok)
    where = None
    if tensor_map:
        try:
            where = locate_first_divergence(model, sym, arg_params, aux_params, inputs, tensor_map, atol, rtol)
        except VerificationError:
            where = None
    message = (f"output {first_bad.line()} differs from MXNet beyond atol={atol:g}, rtol={rtol:g} "
               f"(seed {seed})")
    if where is not None:
        node, op, check = where
        report.first_divergent = node
        raise VerificationError(f"{message}; first divergent node: {node} ({op}): {check.line()}",
                                node=node, op_type=op)
    raise VerificationError(message, node=first_bad.name)
