"""Run the ONNX conformance suites that ship inside the onnx package through a converter.

Suites: ``node`` (``onnx.backend.test.case.node.collect_testcases``), the data folders
``simple``, ``pytorch-converted`` and ``pytorch-operator``, and ``light`` (model-zoo graphs
compared with onnxruntime on the inputs onnx's own runner generates). Expected outputs come
from the cases themselves, never from onnxruntime, except for ``light`` where the issue asks for
agreement with onnxruntime.

Also usable as a script: ``python -m tests.support.conformance node`` prints the table.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_RTOL = 1e-3
FLOAT_ATOL = 1e-5
LIGHT_TOL = 1e-4
SUITES = ("node", "simple", "pytorch-converted", "pytorch-operator", "light")
DATA_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@dataclass
class Case:
    name: str
    suite: str
    load_model: Callable[[], onnx.ModelProto]
    load_data: Callable[[], list[tuple[list[Any], list[Any]]]]
    tolerance: Optional[tuple[float, float]] = None  # (rtol, atol) override


@dataclass
class Result:
    name: str
    suite: str
    status: str  # "pass" | "fail" | "error"
    detail: str = ""
    seconds: float = 0.0


# --- loading cases ---------------------------------------------------------------------------
def node_cases() -> list[Case]:
    from onnx.backend.test.case import node as node_mod

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = node_mod.collect_testcases(None)
    cases = []
    for tc in raw:
        cases.append(Case(tc.name, "node", (lambda m=tc.model: m),
                          (lambda d=tc.data_sets: [([_case_value(v) for v in i], [_case_value(v) for v in o])
                                                   for i, o in d])))
    return cases


def _case_value(value: Any) -> Any:
    """Node cases store some values (bfloat16, float8, 4-bit types) as TensorProto: make them numpy."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return value


def _read_proto_value(path: str) -> Any:
    data = open(path, "rb").read()
    for cls, to_py in (
        (onnx.TensorProto, numpy_helper.to_array),
        (onnx.SequenceProto, numpy_helper.to_list),
        (onnx.OptionalProto, numpy_helper.to_optional),
    ):
        proto = cls()
        try:
            proto.ParseFromString(data)
        except Exception:
            continue
        if cls is onnx.TensorProto and (proto.data_type or proto.dims or proto.raw_data):
            return to_py(proto)
        if cls is onnx.SequenceProto and proto.elem_type:
            return to_py(proto)
        if cls is onnx.OptionalProto and proto.elem_type:
            return to_py(proto)
    proto = onnx.TensorProto()
    proto.ParseFromString(data)
    return numpy_helper.to_array(proto)


def _read_input_or_output(path: str, model_value: Optional[onnx.ValueInfoProto]) -> Any:
    data = open(path, "rb").read()
    if model_value is not None:
        t = model_value.type
        if t.HasField("sequence_type"):
            p = onnx.SequenceProto()
            p.ParseFromString(data)
            return numpy_helper.to_list(p)
        if t.HasField("optional_type"):
            p = onnx.OptionalProto()
            p.ParseFromString(data)
            return numpy_helper.to_optional(p)
        if t.HasField("tensor_type"):
            p = onnx.TensorProto()
            p.ParseFromString(data)
            return numpy_helper.to_array(p)
    return _read_proto_value(path)


def _dir_case(suite: str, case_dir: str) -> Case:
    model_path = os.path.join(case_dir, "model.onnx")

    def load_model() -> onnx.ModelProto:
        return onnx.load(model_path)

    def load_data() -> list[tuple[list[Any], list[Any]]]:
        model = onnx.load(model_path, load_external_data=False)
        inits = {t.name for t in model.graph.initializer}
        ins = [v for v in model.graph.input if v.name not in inits]
        outs = list(model.graph.output)
        sets = []
        for ds in sorted(glob.glob(os.path.join(case_dir, "test_data_set_*"))):
            n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
            n_out = len(glob.glob(os.path.join(ds, "output_*.pb")))
            inputs = [_read_input_or_output(os.path.join(ds, f"input_{i}.pb"), ins[i] if i < len(ins) else None)
                      for i in range(n_in)]
            outputs = [_read_input_or_output(os.path.join(ds, f"output_{i}.pb"), outs[i] if i < len(outs) else None)
                       for i in range(n_out)]
            sets.append((inputs, outputs))
        return sets

    return Case(os.path.basename(case_dir), suite, load_model, load_data)


def dir_cases(suite: str) -> list[Case]:
    root = os.path.join(DATA_DIR, suite)
    return [_dir_case(suite, d) for d in sorted(glob.glob(os.path.join(root, "*"))) if os.path.isdir(d)]


def light_input(model: onnx.ModelProto) -> list[np.ndarray]:
    """The input onnx's own runner feeds light models: arange(n)/n in the declared shape."""
    inits = {t.name for t in model.graph.initializer}
    feeds = []
    for x in model.graph.input:
        if x.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds.append((np.arange(n).reshape(shape) / n).astype(np.float32))
    return feeds


def light_cases() -> list[Case]:
    cases = []
    for path in sorted(glob.glob(os.path.join(DATA_DIR, "light", "light_*.onnx"))):
        name = os.path.basename(path)[len("light_"):-len(".onnx")]

        def load_model(p: str = path) -> onnx.ModelProto:
            return onnx.load(p)

        def load_data(p: str = path) -> list[tuple[list[Any], list[Any]]]:
            import onnxruntime as ort

            model = onnx.load(p)
            feeds = light_input(model)
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            names = [i.name for i in sess.get_inputs()]
            return [(feeds, sess.run(None, dict(zip(names, feeds))))]

        cases.append(Case(name, "light", load_model, load_data, tolerance=(LIGHT_TOL, LIGHT_TOL)))
    return cases


def cases_for(suite: str) -> list[Case]:
    if suite == "node":
        return node_cases()
    if suite == "light":
        return light_cases()
    return dir_cases(suite)


# --- comparing -------------------------------------------------------------------------------
def to_numpy(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz):
            import ml_dtypes

            npdt = {torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn, torch.float8_e5m2: ml_dtypes.float8_e5m2,
                    torch.float8_e4m3fnuz: ml_dtypes.float8_e4m3fnuz,
                    torch.float8_e5m2fnuz: ml_dtypes.float8_e5m2fnuz}[t.dtype]
            return t.view(torch.uint8).numpy().view(npdt)
        return t.numpy()
    if isinstance(obj, (list, tuple)):
        return [to_numpy(o) for o in obj]
    return obj


def to_torch(obj: Any) -> Any:
    import torch

    if obj is None:
        return None
    if isinstance(obj, list):
        return [to_torch(o) for o in obj]
    arr = np.asarray(obj)
    if arr.dtype == object or arr.dtype.kind in "SU":  # strings travel as numpy object arrays of str
        flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(arr.shape)
    name = str(arr.dtype)
    if name == "bfloat16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    special = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2,
               "float8_e4m3fnuz": torch.float8_e4m3fnuz, "float8_e5m2fnuz": torch.float8_e5m2fnuz}
    if name in special:
        return torch.from_numpy(arr.view(np.uint8).copy()).view(special[name])
    return torch.from_numpy(np.array(arr, copy=True))


def _as_str_array(arr: np.ndarray) -> np.ndarray:
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def compare_value(expected: Any, actual: Any, rtol: float, atol: float, where: str = "output") -> Optional[str]:
    """None when equal within tolerance, else a one-line reason."""
    if expected is None or actual is None:
        return None if expected is None and actual is None else f"{where}: expected {type(expected).__name__}, got {type(actual).__name__}"
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)):
            return f"{where}: expected a sequence, got {type(actual).__name__}"
        if len(expected) != len(actual):
            return f"{where}: sequence length {len(actual)} != {len(expected)}"
        for k, (e, a) in enumerate(zip(expected, actual)):
            msg = compare_value(e, a, rtol, atol, f"{where}[{k}]")
            if msg:
                return msg
        return None
    exp = np.asarray(expected)
    act = np.asarray(actual)
    if exp.dtype.kind in "OSU" or act.dtype.kind in "OSU":  # string tensors: compare as str
        exp, act = _as_str_array(exp), _as_str_array(act)
    if exp.shape != act.shape:
        return f"{where}: shape {act.shape} != expected {exp.shape}"
    if exp.dtype != act.dtype:
        return f"{where}: dtype {act.dtype} != expected {exp.dtype}"
    if exp.dtype.kind in "fc" or str(exp.dtype).startswith(("bfloat16", "float8")):
        e = exp.astype(np.complex128 if exp.dtype.kind == "c" else np.float64)
        a = act.astype(e.dtype)
        if not np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            with np.errstate(invalid="ignore"):
                diff = np.abs(a - e)
                diff = np.where(np.isnan(diff), np.inf, diff)
            return f"{where}: max abs diff {float(np.max(diff)) if diff.size else 0:.3g}"
        return None
    if not np.array_equal(exp, act):
        return f"{where}: {int(np.sum(exp != act))} of {exp.size} elements differ"
    return None


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"took over {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_case(case: Case, *, timeout_s: int = 60) -> Result:
    """Convert one case and compare every data set; never raises."""
    import torch

    from onnx2x.torch import convert

    start = time.perf_counter()
    try:
        with time_limit(timeout_s):
            model = case.load_model()
            data = case.load_data()
            gm = convert(model, simplify=case.suite == "light")
            rtol, atol = case.tolerance or (FLOAT_RTOL, FLOAT_ATOL)
            n_out = len(model.graph.output)
            for k, (inputs, expected) in enumerate(data):
                with torch.no_grad():
                    out = gm(*[to_torch(x) for x in inputs])
                outs = list(out) if n_out > 1 else [out]
                if len(outs) != len(expected):
                    return Result(case.name, case.suite, "fail", f"{len(outs)} outputs, expected {len(expected)}",
                                  time.perf_counter() - start)
                for j, (e, a) in enumerate(zip(expected, outs)):
                    msg = compare_value(e, to_numpy(a), rtol, atol, f"data set {k} output {j}")
                    if msg:
                        return Result(case.name, case.suite, "fail", msg, time.perf_counter() - start)
        return Result(case.name, case.suite, "pass", "", time.perf_counter() - start)
    except Exception as exc:  # a failing case is data for the table, not a crash of the run
        text = " ".join(str(exc).split())[:300]
        return Result(case.name, case.suite, "error", f"{type(exc).__name__}: {text}", time.perf_counter() - start)


def run_suite(suite: str, *, timeout_s: int = 60, only: Optional[str] = None) -> list[Result]:
    logging.getLogger("onnx2x").setLevel(logging.ERROR)
    results = []
    for case in cases_for(suite):
        if only and only not in case.name:
            continue
        results.append(run_case(case, timeout_s=timeout_s))
    return results


def write_table(results: list[Result], path: str) -> None:
    """Markdown pass/fail table, one row per case."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    passed = sum(r.status == "pass" for r in results)
    with open(path, "w") as f:
        f.write(f"# {results[0].suite if results else ''}: {passed} / {len(results)} passed\n\n")
        f.write("| case | status | seconds | detail |\n|---|---|---|---|\n")
        for r in results:
            f.write(f"| {r.name} | {r.status} | {r.seconds:.2f} | {r.detail.replace('|', '/')} |\n")


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run an ONNX conformance suite through onnx2x torch.")
    parser.add_argument("suite", choices=SUITES)
    parser.add_argument("--only", help="substring filter on case names")
    parser.add_argument("--failures", action="store_true", help="print failing cases")
    parser.add_argument("--table", help="write the markdown table here")
    args = parser.parse_args(argv)
    results = run_suite(args.suite, only=args.only)
    if args.failures:
        for r in results:
            if r.status != "pass":
                print(f"{r.status:5s} {r.name}: {r.detail}")
    if args.table:
        write_table(results, args.table)
    passed = sum(r.status == "pass" for r in results)
    print(f"{args.suite}: {passed} / {len(results)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
