"""Export time and peak memory: x2onnx's MXNet export vs MXNet's stock exporter (compatibility shims only).

Not a test. One run per (model, exporter), each in a fresh process that loads the checkpoint
from disk, so peaks do not mix::

    python benchmarks/bench_mxnet_export.py                    # resnet50_v1 and vgg16 at 224x224
    python benchmarks/bench_mxnet_export.py --models resnet50_v1 --profile   # where stock spends its time

What is timed: symbol + params already loaded -> ONNX file written (``export_model`` for stock,
``x2onnx.mxnet.export(simplify=False, verify=False)`` + its streaming ``save_model`` for x2onnx; simplification
and verification are extra steps stock does not have, so the default CLI path, export + onnxsim, is
reported on its own as "+sim"). Extra memory is the peak resident size
during that span minus the resident size just before it (peak reset through
``/proc/self/clear_refs``), in units of the model's weight bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.peak_memory import reset_peak, status_mb  # noqa: E402


def _rss_bytes() -> int:
    return int(status_mb("VmRSS") * 2**20)


def _peak_bytes() -> int:
    return int(status_mb("VmHWM") * 2**20)


def prepare(name: str, folder: Path, size: int) -> None:
    """Seeded random weights for a gluon model-zoo network, saved as an MXNet checkpoint."""
    import mx2onnx_patches  # noqa: F401
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(0)
    net = vision.get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size)))
    net.export(str(folder / name), epoch=0)


def child(name: str, folder: Path, size: int, mode: str, profile: bool) -> dict:
    import mx2onnx_patches
    import mxnet as mx
    import numpy as np
    import onnx  # noqa: F401

    prefix = str(folder / name)
    sym, arg, aux = mx.model.load_checkpoint(prefix, 0)
    mx.nd.waitall()
    weight_bytes = sum(v.size * np.dtype(v.dtype).itemsize for v in list(arg.values()) + list(aux.values()))
    out = folder / f"{name}-{mode}.onnx"
    shape = (1, 3, size, size)
    if mode == "stock":
        mx2onnx_patches.apply(only=mx2onnx_patches.COMPAT_REPAIRS)
        import mxnet.onnx

        def run():
            mxnet.onnx.export_model(sym, {**arg, **aux}, [shape], np.float32, str(out), opset_version=13)
    else:
        mx2onnx_patches.apply()
        from x2onnx.mxnet import export
        from x2onnx.mxnet.writer import save_model

        if mode == "x2onnx+sim":
            import onnxsim  # noqa: F401  (imports onnxruntime, ~0.4 s and ~250 MB once per process: not export work)

        def run():
            save_model(export(sym, (arg, aux), {"data": shape}, simplify=mode == "x2onnx+sim", verify=False), out)

    before = _rss_bytes()
    exact = reset_peak()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
        print(text.getvalue(), file=sys.stderr)
    peak = _peak_bytes() if exact else _rss_bytes()
    return {"model": name, "mode": mode, "seconds": seconds, "extra_bytes": max(0, peak - before),
            "weight_bytes": int(weight_bytes), "file_bytes": out.stat().st_size, "exact_peak": exact}


def _spawn(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "MXNET_SUBGRAPH_VERBOSE": "0"})
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    if "--profile" in args and done.stderr.strip():
        print(done.stderr[-4000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50_v1", "vgg16"])
    parser.add_argument("--size", type=int, default=224, help="input height and width (224: the real weight sizes)")
    parser.add_argument("--profile", action="store_true", help="print the top functions of each export")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "FOLDER", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", nargs=2, metavar=("MODEL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare[0], Path(args.prepare[1]), args.size)
        print(json.dumps({}))
        return
    if args.child:
        result = child(args.child[0], Path(args.child[1]), args.size, args.child[2], args.profile)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench_mxnet_export_") as tmp:
        rows = []
        for name in args.models:
            _spawn(["--prepare", name, tmp, "--size", str(args.size)])
            extra = ["--size", str(args.size)] + (["--profile"] if args.profile else [])
            stock = _spawn(["--child", name, tmp, "stock", *extra])
            ours = _spawn(["--child", name, tmp, "x2onnx", *extra])
            simplified = _spawn(["--child", name, tmp, "x2onnx+sim", *extra])
            rows.append((name, stock, ours, simplified))
            for f in Path(tmp).glob(f"{name}*"):
                f.unlink()
    print(f"{'model':<14}{'weights MB':>11}{'stock s':>9}{'x2onnx s':>10}{'time ratio':>12}"
          f"{'stock extra':>13}{'x2onnx extra':>14}{'mem ratio':>11}{'+sim s':>8}{'+sim extra':>12}")
    for name, stock, ours, simplified in rows:
        w = stock["weight_bytes"]
        print(f"{name:<14}{w / 1e6:>11.0f}{stock['seconds']:>9.2f}{ours['seconds']:>10.2f}"
              f"{ours['seconds'] / stock['seconds']:>11.3f}x"
              f"{stock['extra_bytes'] / w:>12.2f}w{ours['extra_bytes'] / w:>13.2f}w"
              f"{ours['extra_bytes'] / max(stock['extra_bytes'], 1):>10.3f}x"
              f"{simplified['seconds']:>8.2f}{simplified['extra_bytes'] / w:>11.2f}w")
    print("extra = peak resident memory during the export minus before it, in weight copies (w); "
          "target: time ratio <= 0.2x, x2onnx extra <= about 1 copy of the weights")


if __name__ == "__main__":
    main()
