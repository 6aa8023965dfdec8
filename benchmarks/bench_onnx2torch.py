"""Forward latency of modules converted by onnx2x on real-size model-zoo graphs.

(Conversion time and memory: ``benchmarks/bench_conversion.py``; small exported graphs against
their eager modules: ``benchmarks/bench_small_graphs.py``.) For the nine graphs of onnx's light
model zoo (resnet50, vgg19, densenet121, inception_v1, inception_v2, squeezenet, shufflenet,
bvlc_alexnet, zfnet512, with seeded random weights of the real size and a symbolic batch, see
``tests/support/light_weights.py``) it measures:

* forward latency of the converted module at batch 1 and 8 against onnxruntime with the same
  thread count (``torch.set_num_threads`` == ORT ``intra_op_num_threads``; targets: <= 1.2x on
  every model, <= 1.0x geometric mean), and against onnx2torch / onnx2pytorch when importable.

Run from the repository root::

    python benchmarks/bench_onnx2torch.py --threads 1 --repeat 20   # the nine models, one thread
    python benchmarks/bench_onnx2torch.py --models resnet50 --threads 1 --repeat 20
    python benchmarks/bench_onnx2torch.py --json reports/bench_onnx2torch.json --no-write

Writes the section ``forward_light`` of docs/BENCHMARKS.json and regenerates docs/BENCHMARKS.md
(``--out-dir`` elsewhere, ``--no-write`` prints only).

Latency is the median of ``--repeat`` runs after warm-up, torch and onnxruntime interleaved so
that load from other processes hits both alike (call by call with one thread, in blocks of five
calls with several: see ``median_latency``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import add_output_flags, geomean, write_section_to  # noqa: E402

MODELS = ("resnet50", "vgg19", "densenet121", "inception_v1", "inception_v2", "squeezenet", "shufflenet",
          "bvlc_alexnet", "zfnet512")
BATCHES = (1, 8)


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


def onnxruntime_session(model: "str | bytes", threads: int) -> Any:
    """onnxruntime on the CPU with ``threads`` intra-op threads and one inter-op thread, as every
    forward benchmark compares it (``torch.set_num_threads`` gives the module the same count)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def latency_columns(lat: dict[str, float], ms_digits: int) -> dict[str, Any]:
    """A row's timings from :func:`median_latency` of ``eager``, ``onnx2x`` and ``onnxruntime``:
    each in ms, and the ratios between them."""
    return {**{f"{k}_ms": round(v * 1e3, ms_digits) for k, v in lat.items()},
            "vs_ort": round(lat["onnx2x"] / lat["onnxruntime"], 3),
            "vs_eager": round(lat["onnx2x"] / lat["eager"], 3),
            "eager_vs_ort": round(lat["eager"] / lat["onnxruntime"], 3)}


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
    import torch

    from onnx2x.torch import convert
    from tests.support.light_weights import light_feed, load_light

    model = load_light(name, dynamic_batch=True)
    weights_mb = sum(np.prod(t.dims) * 4 for t in model.graph.initializer) / 2**20
    path = workdir / f"{name}.onnx"
    onnx.save(model, str(path))
    row: dict[str, Any] = {"model": name, "weights_mb": round(float(weights_mb), 1)}

    torch.set_num_threads(threads)
    sess = onnxruntime_session(str(path), threads)
    in_name = sess.get_inputs()[0].name
    gm = convert(str(path)).eval()
    others = {}
    for k, fn in optional_converters().items():
        mod = _peer_module(k, fn, path, model, row)  # a peer that fails is a row entry, not a crash
        if mod is not None:
            others[k] = mod
    for batch in BATCHES:
        x = light_feed(model, batch=batch, seed=batch)
        xt = torch.from_numpy(x)
        fns: dict[str, Callable[[], Any]] = {}
        with torch.inference_mode():
            ref = sess.run(None, {in_name: x})[0]
            fns["onnxruntime"] = lambda: sess.run(None, {in_name: x})
            row[f"max_abs_diff_b{batch}"] = float(np.abs(gm(xt).numpy() - ref).max())
            fns["onnx2x"] = lambda: gm(xt)
            for k, mod in list(others.items()):
                try:
                    row[f"{k}_max_abs_diff_b{batch}"] = float(np.abs(_first(mod(xt)).numpy() - ref).max())
                except Exception as exc:  # noqa: BLE001 - the peer's failure is its row entry
                    row[f"{k}_error"] = f"batch {batch}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                    del others[k]
                    continue
                fns[k] = (lambda m=mod: m(xt))
            lat = median_latency(fns, repeat, block=1 if threads == 1 else 5)
        for k, v in lat.items():
            row[f"{k}_b{batch}_ms"] = round(v * 1e3, 2)
        row[f"ratio_b{batch}"] = round(lat["onnx2x"] / lat["onnxruntime"], 3)
        for k in others:
            row[f"{k}_ratio_b{batch}"] = round(lat[k] / lat["onnxruntime"], 3)
    return row


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _peer_module(name: str, fn: Callable[[Any], Any], path: Path, model: Any, row: dict[str, Any]) -> Any:
    """The peer converter's module for ``path``, or None with ``row[name + "_error"]`` saying why."""
    import onnx

    try:
        return fn(onnx.load(str(path))).eval()
    except Exception as exc:  # noqa: BLE001 - any failure of a peer is recorded, never raised
        row[f"{name}_error"] = f"conversion: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return None


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    print(f"\nthreads: torch.set_num_threads({threads}) == ORT intra_op_num_threads={threads}\n")
    print("| model | weights MB | fwd b1 ms onnx2x / ORT (x) | fwd b8 ms onnx2x / ORT (x) |")
    print("|---|---|---|---|")
    for r in rows:
        def lat(b: int) -> str:
            return f"{r[f'onnx2x_b{b}_ms']} / {r[f'onnxruntime_b{b}_ms']} ({r[f'ratio_b{b}']}x)"
        print(f"| {r['model']} | {r['weights_mb']} | {lat(1)} | {lat(8)} |")
    for r in rows:
        for key, value in r.items():
            if key.endswith("_error"):
                print(f"\n{r['model']}: {key[:-len('_error')]} failed: {value}")
    for b in BATCHES:
        ratios = [r[f"ratio_b{b}"] for r in rows if f"ratio_b{b}" in r]
        if ratios:
            print(f"\nforward batch {b}: geometric mean onnx2x / onnxruntime = {geomean(ratios):.3f}x, "
                  f"worst = {max(ratios):.3f}x")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"default: {' '.join(MODELS)}")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="threads for both torch and onnxruntime (default: min(4, cores))")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per measurement (median)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    add_output_flags(parser)
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
    if not args.no_write:
        write_section_to(section(rows, args.threads, args.repeat), args.out_dir)
    return 0


def section(rows: list[dict[str, Any]], threads: int, repeat: int) -> "Section":
    """The rows as the ``forward_light`` section of docs/BENCHMARKS.md."""
    from benchmarks.report import Section, machine

    peers = sorted({k[:-len("_ratio_b1")] for r in rows for k in r if k.endswith("_ratio_b1")})
    columns = [("model", "model"), ("weights_mb", "weights MB")]
    for b in BATCHES:
        columns += [(f"onnx2x_b{b}_ms", f"batch {b}: onnx2x ms"), (f"onnxruntime_b{b}_ms", "onnxruntime ms"),
                    (f"ratio_b{b}", "onnx2x / onnxruntime")]
        columns += [(f"{p}_ratio_b{b}", f"{p} / onnxruntime") for p in peers]
    notes = []
    for b in BATCHES:
        ratios = [r[f"ratio_b{b}"] for r in rows if f"ratio_b{b}" in r]
        if ratios:
            notes.append(f"batch {b}: geometric mean onnx2x / onnxruntime {geomean(ratios):.3f}, worst {max(ratios):.3f}")
    notes += [f"{r['model']}: {k[:-len('_error')]} failed: {v}" for r in rows for k, v in r.items() if k.endswith("_error")]
    if not peers:
        notes.append("onnx2torch and onnx2pytorch were not installed for this run.")
    return Section(
        key="forward_light", title="onnx2x torch: forward latency of the light model-zoo graphs",
        intro=("Median forward latency of the converted module against onnxruntime on the same file, with "
               "the same thread count, calls interleaved; onnx's light graphs with seeded random weights. "
               "Targets at batch 1: geometric mean <= 1.0, every model <= 1.2. "
               "`python benchmarks/bench_onnx2torch.py --threads 1 --repeat 20`."),
        columns=columns, rows=rows, notes=notes, meta={"threads": threads, "repeat": repeat, **machine()})


if __name__ == "__main__":
    sys.exit(main())
