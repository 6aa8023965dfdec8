"""Benchmark of the ONNX -> PyTorch converter on real-size model-zoo graphs.

For resnet50, vgg19, densenet121 and inception_v1 (onnx's light graphs with seeded random weights
of the real size and a symbolic batch, see ``tests/support/light_weights.py``) it measures:

* conversion time of ``onnx2x.torch.convert(path)`` against ``onnx.load(path)`` (target <= 1.5x),
  with and without onnx-simplifier (one-time imports of onnx2x, its converters and onnxsim are
  done before the clock starts, as ``import onnx`` is for ``onnx.load``);
* peak memory of the conversion, in copies of the weights (target: at most one copy beyond the
  loaded model), each measurement in a fresh subprocess;
* forward latency of the converted module at batch 1 and 8 against onnxruntime with the same
  thread count (``torch.set_num_threads`` == ORT ``intra_op_num_threads``; targets: <= 1.2x on
  every model, <= 1.0x geometric mean), and against onnx2torch / onnx2pytorch when importable.

Run from the repository root::

    python benchmarks/bench_onnx2torch.py                       # all four models
    python benchmarks/bench_onnx2torch.py --models resnet50 --threads 1 --repeat 20
    python benchmarks/bench_onnx2torch.py --json reports/bench_onnx2torch.json

Latency is the median of ``--repeat`` runs after warm-up, torch and onnxruntime interleaved so
that load from other processes hits both alike (call by call with one thread, in blocks of five
calls with several: see ``median_latency``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODELS = ("resnet50", "vgg19", "densenet121", "inception_v1")
BATCHES = (1, 8)


# --- conversion time and memory (each in a fresh subprocess) ---------------------------------
_MEASURE = r'''
import gc, json, sys, time
import onnx, numpy, torch
sys.path.insert(0, sys.argv[3])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024

mode, path = sys.argv[1], sys.argv[2]
if mode != "load":  # one-time imports are not conversion work: done before the clock starts
    from onnx2x.torch import convert
    import onnx2x.torch.registry as registry
    registry._ensure_loaded()
if mode == "convert":
    try:
        import onnxsim  # imports onnxruntime: ~0.4 s and ~100 MB once per process
    except ImportError:
        pass
gc.collect()
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
base = status("VmRSS")
start = time.perf_counter()
if mode == "load":
    obj = onnx.load(path)
elif mode == "convert":
    obj = convert(path)
elif mode == "convert-nosim":
    obj = convert(path, simplify=False)
seconds = time.perf_counter() - start
peak = status("VmHWM")
gc.collect()
print(json.dumps({"seconds": seconds, "peak_mb": peak - base, "held_mb": status("VmRSS") - base}))
'''


def measure_in_subprocess(mode: str, path: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, mode, path, str(REPO)], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} {path} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- latency ------------------------------------------------------------------------------------
def median_latency(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int = 3, block: int = 1) -> dict[str, float]:
    """Median seconds per call of each fn, over ``repeat`` timed calls each, interleaved.

    ``block`` > 1 alternates blocks of that many timed calls, each after one untimed call: with
    several threads, one framework's thread pool still spins for a moment after its call returns
    (onnxruntime's by default, OpenMP's too) and would slow down the other's next call.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(-(-repeat // block)):
        for name, fn in fns.items():
            if block > 1:
                fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def optional_converters() -> dict[str, Callable[[Any], Any]]:
    """onnx2torch / onnx2pytorch when installed (they are not dependencies of this project)."""
    found: dict[str, Callable[[Any], Any]] = {}
    try:
        import onnx2torch  # type: ignore[import-not-found]

        found["onnx2torch"] = onnx2torch.convert
    except ImportError:
        pass
    try:
        from onnx2pytorch import ConvertModel  # type: ignore[import-not-found]

        found["onnx2pytorch"] = lambda m: ConvertModel(m, experimental=True)
    except ImportError:
        pass
    return found


def bench_model(name: str, workdir: Path, threads: int, repeat: int) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from onnx2x.torch import convert
    from tests.support.light_weights import light_feed, load_light

    model = load_light(name, dynamic_batch=True)
    weights_mb = sum(np.prod(t.dims) * 4 for t in model.graph.initializer) / 2**20
    path = workdir / f"{name}.onnx"
    onnx.save(model, str(path))
    row: dict[str, Any] = {"model": name, "weights_mb": round(float(weights_mb), 1)}

    load = measure_in_subprocess("load", str(path))
    conv = measure_in_subprocess("convert", str(path))
    nosim = measure_in_subprocess("convert-nosim", str(path))
    row.update({
        "load_s": round(load["seconds"], 3),
        "convert_s": round(conv["seconds"], 3),
        "convert_nosim_s": round(nosim["seconds"], 3),
        "convert_ratio": round(conv["seconds"] / load["seconds"], 2),
        "convert_nosim_ratio": round(nosim["seconds"] / load["seconds"], 2),
        "load_peak_copies": round(load["peak_mb"] / weights_mb, 2),
        "convert_peak_copies": round(conv["peak_mb"] / weights_mb, 2),
        "convert_nosim_peak_copies": round(nosim["peak_mb"] / weights_mb, 2),
        "convert_held_copies": round(conv["held_mb"] / weights_mb, 2),
    })

    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    gm = convert(str(path)).eval()
    others = {k: fn(onnx.load(str(path))).eval() for k, fn in optional_converters().items()}
    for batch in BATCHES:
        x = light_feed(model, batch=batch, seed=batch)
        xt = torch.from_numpy(x)
        fns: dict[str, Callable[[], Any]] = {}
        with torch.inference_mode():
            ref = sess.run(None, {in_name: x})[0]
            fns["onnxruntime"] = lambda: sess.run(None, {in_name: x})
            row[f"max_abs_diff_b{batch}"] = float(np.abs(gm(xt).numpy() - ref).max())
            fns["onnx2x"] = lambda: gm(xt)
            for k, mod in others.items():
                fns[k] = (lambda m=mod: m(xt))
            lat = median_latency(fns, repeat, block=1 if threads == 1 else 5)
        for k, v in lat.items():
            row[f"{k}_b{batch}_ms"] = round(v * 1e3, 2)
        row[f"ratio_b{batch}"] = round(lat["onnx2x"] / lat["onnxruntime"], 3)
        for k in others:
            row[f"{k}_ratio_b{batch}"] = round(lat[k] / lat["onnxruntime"], 3)
    return row


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    print(f"\nthreads: torch.set_num_threads({threads}) == ORT intra_op_num_threads={threads}\n")
    print("| model | weights MB | onnx.load s | convert s (x load) | convert no-simplify s (x load) "
          "| peak mem, weight copies: load / convert / no-simplify | fwd b1 ms onnx2x / ORT (x) | fwd b8 ms onnx2x / ORT (x) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        def lat(b: int) -> str:
            return f"{r[f'onnx2x_b{b}_ms']} / {r[f'onnxruntime_b{b}_ms']} ({r[f'ratio_b{b}']}x)"
        print(f"| {r['model']} | {r['weights_mb']} | {r['load_s']} | {r['convert_s']} ({r['convert_ratio']}x) "
              f"| {r['convert_nosim_s']} ({r['convert_nosim_ratio']}x) "
              f"| {r['load_peak_copies']} / {r['convert_peak_copies']} / {r['convert_nosim_peak_copies']} "
              f"| {lat(1)} | {lat(8)} |")
    for b in BATCHES:
        ratios = [r[f"ratio_b{b}"] for r in rows if f"ratio_b{b}" in r]
        if ratios:
            geo = math.exp(sum(math.log(v) for v in ratios) / len(ratios))
            print(f"\nforward batch {b}: geometric mean onnx2x / onnxruntime = {geo:.3f}x, worst = {max(ratios):.3f}x")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"default: {' '.join(MODELS)}")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="threads for both torch and onnxruntime (default: min(4, cores))")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per measurement (median)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("onnx2x").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_onnx2torch_") as tmp:
        for name in args.models:
            row = bench_model(name, Path(tmp), args.threads, args.repeat)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print_table(rows, args.threads)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
