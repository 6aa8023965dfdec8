"""Forward latency of timm image models at their real size: the eager module, its converted export, onnxruntime.

For each model (timm's architecture at 224x224 with 1000 classes, seeded and made realistic as in
``tests/support/timm_corpus.py``: constant-initialised parameters given noise, BatchNorm statistics
measured on random images), a subprocess builds it, exports it with ``torch.onnx.export``
(TorchScript exporter, opset 17, dynamic batch, as users export them), converts the file with
``onnx2x.torch.convert`` (default flags) and times the eager module, the converted module and
onnxruntime on the same input in one process, calls interleaved
(``bench_onnx2torch.median_latency``). The converted output is checked against onnxruntime first
(max |difference| in the row). The small-graph benchmark (``bench_small_graphs.py``) covers text
models and hand-built nets at toy sizes, where per-op dispatch dominates; this one covers the
image models people convert, where the kernels do.

The subprocess is needed because timm imports torchvision, whose C++ ops cannot load beside this
torch; the build stubs it (``tests.support.timm_corpus``), in a process of its own.

Run from the repository root::

    python benchmarks/bench_timm.py                                  # every model, one thread, batch 1
    python benchmarks/bench_timm.py --models resnet18 efficientnet_b0 --threads 1 2 --batches 1 8
    python benchmarks/bench_timm.py --smoke --out-dir /tmp/bench     # CI: one model, 3 calls

Writes the section ``timm_models`` of docs/BENCHMARKS.json and regenerates docs/BENCHMARKS.md
(``--out-dir`` elsewhere, ``--no-write`` prints only).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import Section, add_output_flags, geomean, machine, report  # noqa: E402

# residual, mobile (depthwise, SE, hardswish, SiLU), grouped, ConvNeXt, attention (ViT, LeViT) families
MODELS = ("resnet18", "mobilenetv3_large_100", "efficientnet_b0", "ghostnet_100", "regnetx_004", "convnext_atto",
          "vit_tiny_patch16_224", "levit_128s")
SMOKE = "mobilenetv3_large_100"
SIDE = 224


def measure(name: str, folder: Path, threads_list: list[int], batches: list[int], repeat: int) -> list[dict[str, Any]]:
    """Build, export, convert and time one model (run in its own process: see the module doc)."""
    import warnings

    import numpy as np
    import torch

    from benchmarks.bench_onnx2torch import latency_columns, median_latency, onnxruntime_session
    from onnx2x.torch import convert
    from tests.support.timm_corpus import _import_timm, _realistic_weights

    timm = _import_timm()
    torch.manual_seed(0)
    eager = timm.create_model(name, pretrained=False, num_classes=1000).eval()
    _realistic_weights(eager, SIDE)
    path = folder / f"{name}.onnx"
    sample = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(eager, (sample,), str(path), opset_version=17, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    converted = convert(str(path)).eval()
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        sess = onnxruntime_session(str(path), threads)
        for batch in batches:
            x = torch.randn(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(batch))
            feeds = {"input": x.numpy()}
            with torch.inference_mode():
                want = sess.run(None, feeds)[0]
                diff = float(np.abs(converted(x).numpy() - want).max())
                lat = median_latency({"eager": lambda: eager(x), "onnx2x": lambda: converted(x),
                                      "onnxruntime": lambda: sess.run(None, feeds)},
                                     repeat, block=1 if threads == 1 else 5)
            row = {"model": name, "threads": threads, "batch": batch, **latency_columns(lat, ms_digits=2),
                   "max_abs_diff": diff, "scale": float(np.abs(want).max())}
            rows.append(row)
    return rows


def run_in_subprocess(name: str, threads: list[int], batches: list[int], repeat: int) -> list[dict[str, Any]]:
    """:func:`measure` in a fresh interpreter; a model that fails is one row saying why."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--folder", tmp, "--repeat", str(repeat),
               "--threads", *map(str, threads), "--batches", *map(str, batches)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not rows:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:160] or f"exit status {proc.returncode}"
        return [{"model": name, "error": tail}]
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (threads, batch): geometric means over the models, and those slower than eager."""
    out = []
    measured = [r for r in rows if "error" not in r]
    for key in sorted({(r["threads"], r["batch"]) for r in measured}):
        group = [r for r in measured if (r["threads"], r["batch"]) == key]
        out.append({"threads": key[0], "batch": key[1], "models": len(group),
                    "geomean_vs_ort": geomean([r["vs_ort"] for r in group]),
                    "geomean_vs_eager": geomean([r["vs_eager"] for r in group]),
                    "slower_than_eager": [r["model"] for r in group if r["vs_eager"] > 1.0]})
    return out


def section(rows: list[dict[str, Any]], repeat: int) -> Section:
    columns = [("model", "model"), ("threads", "threads"), ("batch", "batch"), ("eager_ms", "eager ms"),
               ("onnx2x_ms", "onnx2x ms"), ("onnxruntime_ms", "onnxruntime ms"), ("vs_eager", "onnx2x / eager"),
               ("vs_ort", "onnx2x / onnxruntime"), ("eager_vs_ort", "eager / onnxruntime"),
               ("max_abs_diff", "max abs diff (scale)"), ("error", "failure")]
    shown = [dict(r, max_abs_diff=f"{r['max_abs_diff']:.2g} ({r['scale']:.2g})") if "error" not in r else r
             for r in rows]
    notes = [f"threads {s['threads']}, batch {s['batch']}: geometric mean onnx2x / onnxruntime {s['geomean_vs_ort']}, "
             f"onnx2x / eager {s['geomean_vs_eager']}; slower than eager: {', '.join(s['slower_than_eager']) or 'none'}"
             for s in summary(rows)]
    return Section(
        key="timm_models", title="onnx2x torch: forward latency of timm image models at 224x224",
        intro=("Median latency of timm's eager module (seeded, realistic BatchNorm statistics, 1000 classes), the "
               "module `onnx2x.torch.convert` makes of its `torch.onnx.export` file (default flags) and onnxruntime "
               "on the same file, in one process with calls interleaved. `python benchmarks/bench_timm.py`."),
        columns=columns, rows=shown, notes=notes, meta={"repeat": repeat, **machine()})


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Run from the repository root. See the module docstring for what is measured.")
    parser.add_argument("--models", nargs="*", default=list(MODELS), metavar="MODEL",
                        help=f"timm model names (default: {' '.join(MODELS)})")
    parser.add_argument("--threads", nargs="*", type=int, default=[1], help="thread counts (default 1)")
    parser.add_argument("--batches", nargs="*", type=int, default=[1], help="batch sizes (default 1)")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per figure (default 15)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE}, one thread, batch 1, 3 calls")
    parser.add_argument("--one", metavar="MODEL", help=argparse.SUPPRESS)  # the per-model subprocess
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    add_output_flags(parser)
    args = parser.parse_args(argv)
    if args.one:
        for row in measure(args.one, args.folder, args.threads, args.batches, args.repeat):
            print(json.dumps(row), flush=True)
        return 0
    if args.smoke:
        args.models, args.threads, args.batches, args.repeat = [SMOKE], [1], [1], 3
    rows: list[dict[str, Any]] = []
    for name in args.models:
        got = run_in_subprocess(name, args.threads, args.batches, args.repeat)
        for row in got:
            print(json.dumps(row), flush=True)
        rows += got
    report(section(rows, args.repeat), summary(rows), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
