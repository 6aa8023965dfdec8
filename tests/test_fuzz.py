"""Fuzz suite: mutated ONNX files, MXNet symbol JSON and MXNet params through the real CLIs.

Every input must either convert or end in one clean ``error:`` line with exit code 2 or 3 and no
output file; anything else (another exception, a native crash, a hang, a leftover file) counts as
"other" and fails the test. Conversions run in restartable child processes (tests/support/
fuzz_worker.py) so a crash in native code is caught and counted. Seeded: set X2ONNX_FUZZ_SEED to
reproduce a run, X2ONNX_FUZZ_SCALE to scale the number of inputs (default 1.0 = 2,000 inputs).
"""
from __future__ import annotations

import collections
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.support import fuzz_mutators as fm
from tests.support.fuzz_runner import Worker

SEED = int(os.environ.get("X2ONNX_FUZZ_SEED", "20261122"))
SCALE = float(os.environ.get("X2ONNX_FUZZ_SCALE", "1.0"))
COUNTS = {"onnx": int(1200 * SCALE), "symbol": int(400 * SCALE), "params": int(400 * SCALE)}
PER_INPUT_TIMEOUT_S = 60.0
WORKERS = 2


def _onnx_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    f32 = TensorProto.FLOAT

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    conv = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
         helper.make_node("Flatten", ["p"], ["f"], name="flat"),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="fc")],
        "conv_net", [helper.make_tensor_value_info("x", f32, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", f32, [1, 5])],
        [init("w", 4, 3, 3, 3), init("b", 4), init("fw", 5, 64), init("fb", 5)])
    shape_ops = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("Constant", [], ["minus1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
         helper.make_node("Slice", ["s", "zero", "one"], ["n"], name="slice"),
         helper.make_node("Concat", ["n", "minus1"], ["ns"], axis=0, name="concat"),
         helper.make_node("Reshape", ["x", "ns"], ["flat"], name="reshape"),
         helper.make_node("Transpose", ["flat"], ["t"], perm=[1, 0], name="transpose"),
         helper.make_node("Softmax", ["t"], ["y"], axis=0, name="softmax")],
        "shape_net", [helper.make_tensor_value_info("x", f32, ["N", 2, 3])],
        [helper.make_tensor_value_info("y", f32, [6, "N"])],
        [numpy_helper.from_array(np.array([0], np.int64), "zero"),
         numpy_helper.from_array(np.array([1], np.int64), "one")])
    mlp = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
         helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
         helper.make_node("Sigmoid", ["hb"], ["a"], name="act"),
         helper.make_node("MatMul", ["a", "w2"], ["o"], name="mm2"),
         helper.make_node("ReduceMean", ["o"], ["y"], axes=[1], keepdims=1, name="mean")],
        "mlp", [helper.make_tensor_value_info("x", f32, [2, 6])],
        [helper.make_tensor_value_info("y", f32, [2, 1])],
        [init("w1", 6, 8), init("b1", 8), init("w2", 8, 3)])
    models = [helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
              for g in (conv, shape_ops, mlp)]
    for m in models:
        onnx.checker.check_model(m)
    return [m.SerializeToString() for m in models]


def _mxnet_seed(folder: Path) -> tuple[str, dict, dict]:
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    data = mx.sym.Variable("data")
    net = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="conv1")
    net = mx.sym.LeakyReLU(net, act_type="prelu", name="prelu1")
    net = mx.sym.Pooling(net, kernel=(2, 2), stride=(2, 2), pool_type="max", pooling_convention="full", name="pool1")
    parts = mx.sym.SliceChannel(net, num_outputs=2, axis=1, name="split")
    net = mx.sym.Flatten(parts[1] + parts[0], name="flat")
    net = mx.sym.FullyConnected(net, num_hidden=3, name="fc1")
    arg_shapes, _, aux_shapes = net.infer_shape(data=(1, 3, 10, 10))
    rng = np.random.default_rng(1)
    shapes = {}
    arrays = {}
    for name, shape in zip(net.list_arguments(), arg_shapes):
        if name != "data":
            arrays[f"arg:{name}"] = rng.standard_normal(shape).astype(np.float32)
            shapes[f"arg:{name}"] = shape
    return net.tojson(), arrays, shapes


def _save_params(path: Path, arrays: dict) -> None:
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    mx.nd.save(str(path), {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})


def _make_inputs(folder: Path) -> list[dict]:
    rng = random.Random(SEED)
    requests = []
    seeds = _onnx_seeds()
    for i in range(COUNTS["onnx"]):
        name, data = fm.mutate_onnx(rng, rng.choice(seeds))
        path = folder / f"onnx_{i}.onnx"
        path.write_bytes(data)
        out = folder / "out" / f"onnx_{i}.pt"
        requests.append({"cli": "onnx2x", "kind": "onnx", "mutation": name,
                         "argv": ["torch", str(path), "-o", str(out), "-q"],
                         "outputs": [str(out), str(out.with_suffix(".py"))]})
    sym_json, arrays, shapes = _mxnet_seed(folder)
    good_sym = folder / "seed-symbol.json"
    good_sym.write_text(sym_json)
    good_params = folder / "seed.params"
    _save_params(good_params, arrays)
    params_bytes = good_params.read_bytes()
    mx_args = ["--input-shape", "data:1,3,10,10", "-q"]
    for i in range(COUNTS["symbol"]):
        name, data = fm.mutate_symbol_json(rng, sym_json)
        path = folder / f"sym_{i}-symbol.json"
        path.write_bytes(data)
        out = folder / "out" / f"sym_{i}.onnx"
        requests.append({"cli": "x2onnx", "kind": "symbol", "mutation": name,
                         "argv": ["mxnet", str(path), str(good_params), "-o", str(out)] + mx_args,
                         "outputs": [str(out)]})
    for i in range(COUNTS["params"]):
        path = folder / f"params_{i}.params"
        if rng.random() < 0.5:
            name, data = fm.mutate_params(rng, params_bytes)
            path.write_bytes(data)
        else:
            name, variant = fm.params_variants(rng, arrays, shapes)
            real = {}
            for key, value in variant.items():
                if isinstance(value, tuple) and value[0] == "reshape":
                    real[key] = np.zeros(value[1], np.float32)
                elif isinstance(value, tuple) and value[0] == "astype":
                    real[key] = arrays[key].astype(value[1])
                elif isinstance(value, tuple) and value[0] == "new":
                    real[key] = np.zeros(value[1], np.float32)
                else:
                    real[key] = value
            _save_params(path, real)
        out = folder / "out" / f"params_{i}.onnx"
        requests.append({"cli": "x2onnx", "kind": "params", "mutation": name,
                         "argv": ["mxnet", str(good_sym), str(path), "-o", str(out)] + mx_args,
                         "outputs": [str(out)]})
    return requests


def test_fuzz_every_input_converts_or_fails_cleanly(tmp_path, capsys):
    requests = _make_inputs(tmp_path)
    assert len(requests) >= 2000 * SCALE - 1
    workers = [Worker() for _ in range(WORKERS)]
    results: list[tuple[dict, dict]] = []

    def run_share(k: int) -> None:
        for req in requests[k::WORKERS]:
            results.append((req, workers[k].run(req, PER_INPUT_TIMEOUT_S)))

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(run_share, range(WORKERS)))
    finally:
        for w in workers:
            w.close()
    counts = collections.Counter(res["outcome"] for _, res in results)
    by_kind = collections.Counter((req["kind"], res["outcome"]) for req, res in results)
    others = [(req["kind"], req["mutation"], req["argv"][1], res["detail"]) for req, res in results
              if res["outcome"] == "other"]
    with capsys.disabled():
        print(f"\nfuzz (seed {SEED}): tried {len(results)}, converted {counts['converted']}, "
              f"clean errors {counts['clean']}, other {counts['other']}")
        print("  by input kind: " + ", ".join(f"{k}/{o}={n}" for (k, o), n in sorted(by_kind.items())))
        for other in others[:15]:
            print("  other:", other)
    assert len(results) == len(requests)
    assert counts["other"] == 0, f"{counts['other']} inputs ended badly, first: {others[:5]}"
    # The mutations must exercise both paths, or the suite proves nothing.
    assert counts["clean"] > 0.2 * len(results)
    assert counts["converted"] > 0
