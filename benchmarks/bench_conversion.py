"""What a conversion costs: time against ``onnx.load``, peak memory in copies of the weights, and
the wall time of ``x2onnx mxnet`` against MXNet's stock exporter.

**onnx2x torch** (the ``light`` model-zoo graphs of onnx's backend test data with seeded random
weights of the real size and a symbolic batch, ``tests/support/light_weights.py``). Each figure
comes from a fresh subprocess per model and mode:

* ``onnx.load``: ``onnx.load(path)``, the reference;
* ``convert()``: the Python API, ``onnx2x.torch.convert(path)`` (file -> GraphModule in memory);
* ``CLI``: *conversion* as ``onnx2x torch MODEL.onnx -o OUT.pt`` does it with default flags, from
  the file to a written artifact: load, onnx-simplifier, shape inference, graph build, fusion,
  code generation, verification against onnxruntime, and the atomic write of ``.py`` + ``.pt``
  (``onnx2x.cli.convert_torch``, what the command runs after parsing its arguments);
* ``CLI --no-verify``: the same without the verification (the verification's own share is
  the difference).

Before the clock starts, each subprocess imports what the mode needs and runs the same mode once
on a tiny model (one-time costs: imports, onnxsim's and onnxruntime's first-call set-up, as
``import onnx`` is for ``onnx.load``; ``tests/support/peak_memory.py``). Time: the best of
``--repeat`` subprocesses. Memory: peak resident size (VmHWM, reset through
``/proc/self/clear_refs``) minus the resident size just before, in units of the model's weight
bytes (median over the subprocesses). Targets: conversion <= 1.5x ``onnx.load``, peak <= 1.2
weight copies.

**x2onnx mxnet** (the real MTCNN checkpoints of ``$X2ONNX_MODELS_DIR`` and gluon model-zoo
networks with seeded random weights): wall time of the whole command in a fresh process,
start-up included, for ``x2onnx mxnet`` with default flags (simplify + verify) and with
``--no-verify --no-simplify``, against ``mxnet.onnx.export_model`` (with the compatibility shims
that let MXNet 1.9.1's exporter run beside today's onnx) on the same model. The best of
``--repeat`` runs. A failing command is a row (its time until failure, marked), not a crash.
Targets: default <= 2x stock, ``--no-verify --no-simplify`` <= 1.2x stock.

Run from the repository root::

    python benchmarks/bench_conversion.py                    # every light model, MTCNN + gluon nets
    python benchmarks/bench_conversion.py --models resnet50 vgg19 --mxnet-models det1 --repeat 5
    python benchmarks/bench_conversion.py --smoke --out-dir /tmp/bench   # CI: one model each, once

Writes the sections ``onnx2x_conversion`` and ``x2onnx_cli`` of docs/BENCHMARKS.json and
regenerates docs/BENCHMARKS.md (``--out-dir`` writes them elsewhere; ``--no-write`` prints only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import Section, add_output_flags, machine, write_section  # noqa: E402
from tests.support.peak_memory import measure_in_subprocess  # noqa: E402

ONNX2X_MODES = ("load", "convert", "cli", "cli-noverify")
MXNET_MODES = ("stock", "x2onnx", "x2onnx-nv-ns")
MTCNN = {"det1": (1, 3, 12, 12), "det2": (1, 3, 24, 24), "det3": (1, 3, 48, 48), "det4": (1, 15, 24, 24)}
GLUON = {"squeezenet1.1": (1, 3, 224, 224), "mobilenet0.25": (1, 3, 224, 224), "resnet18_v1": (1, 3, 224, 224)}
SMOKE_MODEL, SMOKE_MXNET = "squeezenet", "det1"


# --- onnx2x torch ------------------------------------------------------------------------------
def weight_bytes(path: str) -> int:
    """Bytes of the model's initializers (what 'one copy of the weights' means here)."""
    from common.model_io import load_onnx, tensor_nbytes

    model = load_onnx(path, lazy=True)
    return sum(tensor_nbytes(t) or 0 for t in model.graph.initializer)


def bench_onnx2x(name: str, folder: Path, repeat: int, modes: tuple[str, ...]) -> dict[str, Any]:
    import onnx

    from tests.support.light_weights import load_light

    path = folder / f"{name}.onnx"
    onnx.save(load_light(name, dynamic_batch=True), str(path))
    weights_mb = weight_bytes(str(path)) / 2**20
    row: dict[str, Any] = {"model": name, "weights_mb": round(weights_mb, 1)}
    for mode in modes:
        cli_mode = mode.startswith("cli")
        runs = [measure_in_subprocess("cli" if cli_mode else mode, path,
                                      cli_flags=["--no-verify"] if mode == "cli-noverify" else ())
                for _ in range(repeat)]
        good = [r for r in runs if "error" not in r]
        if not good:
            row[f"{mode}_error"] = runs[0]["error"]
            continue
        row[f"{mode}_s"] = round(min(r["seconds"] for r in good), 3)
        row[f"{mode}_copies"] = round(statistics.median(r["peak_mb"] for r in good) / weights_mb, 2)
    base = row.get("load_s")
    for mode in modes[1:]:
        if base and f"{mode}_s" in row:
            row[f"{mode}_ratio"] = round(row[f"{mode}_s"] / base, 2)
    if "cli_s" in row and "cli-noverify_s" in row:
        row["verify_s"] = round(max(row["cli_s"] - row["cli-noverify_s"], 0.0), 3)
    path.unlink()
    return row


def _onnx2x_cell(row: dict[str, Any], mode: str) -> str:
    if f"{mode}_error" in row:
        return "failed: " + row[f"{mode}_error"][:80]
    if f"{mode}_s" not in row:
        return "-"
    ratio = row.get(f"{mode}_ratio")
    return f"{row[f'{mode}_s']:.3g} s" + (f" ({ratio:.2f}x)" if ratio is not None else "")


def onnx2x_section(rows: list[dict[str, Any]], repeat: int) -> Section:
    table = []
    for r in rows:
        table.append({
            "model": r["model"], "weights_mb": r["weights_mb"], "load": _onnx2x_cell(r, "load"),
            "convert": _onnx2x_cell(r, "convert"), "cli": _onnx2x_cell(r, "cli"),
            "cli_nv": _onnx2x_cell(r, "cli-noverify"), "verify": r.get("verify_s"),
            "copies": " / ".join("-" if f"{m}_copies" not in r else f"{r[f'{m}_copies']:.2f}" for m in ONNX2X_MODES),
        })
    return Section(
        key="onnx2x_conversion",
        title="onnx2x torch: conversion time and peak memory",
        intro=("Conversion = what `onnx2x torch MODEL.onnx -o OUT.pt` does from the file to a written artifact "
               "(load, onnx-simplifier, shape inference, graph build, fusion, code generation, verification "
               "against onnxruntime, atomic write). Times are the best of the runs, each in a fresh process "
               "after its imports and one conversion of a tiny model; (x) = against `onnx.load` of the same "
               "file. Peak memory = peak resident size minus the size before, in copies of the model's "
               "weights. Targets: conversion <= 1.5x `onnx.load`, peak <= 1.2 copies. "
               "Models: onnx's `light` model-zoo graphs with seeded random weights of the real size."),
        columns=[("model", "model"), ("weights_mb", "weights MB"), ("load", "onnx.load"),
                 ("convert", "convert() (x)"), ("cli", "CLI, default flags (x)"), ("cli_nv", "CLI --no-verify (x)"),
                 ("verify", "verification s"),
                 ("copies", "peak, weight copies: onnx.load / convert() / CLI / CLI --no-verify")],
        rows=table,
        notes=["`verification s` = CLI minus CLI --no-verify: onnxruntime session and run, the module's "
               "forward on the written files (weights memory-mapped), the comparison "
               "(onnx2x/torch/verify.py)."],
        meta={"runs per figure": repeat, **machine()},
    )


# --- x2onnx mxnet ------------------------------------------------------------------------------
_STOCK = r'''
import sys
import numpy as np
import mx2onnx_patches  # the compatibility shims only: MXNet 1.9.1's exporter against today's onnx
import mxnet as mx
mx2onnx_patches.apply(only=mx2onnx_patches.COMPAT_REPAIRS)
import mxnet.onnx
shape = tuple(int(d) for d in sys.argv[3].split(","))
mxnet.onnx.export_model(sys.argv[1], sys.argv[2], [shape], np.float32, sys.argv[4], opset_version=13)
'''


def prepare_gluon(name: str, folder: Path, shape: tuple[int, ...]) -> tuple[Path, Path]:
    """A gluon model-zoo network with seeded random weights, saved as an MXNet checkpoint."""
    code = ("import sys, mx2onnx_patches\nfrom mx2onnx_patches.mxnet_import import import_mxnet\n"
            "mx = import_mxnet()\nfrom mxnet.gluon.model_zoo import vision\nmx.random.seed(0)\n"
            "net = vision.get_model(sys.argv[1], pretrained=False)\nnet.initialize(mx.init.Xavier())\n"
            "net.hybridize()\nnet(mx.nd.zeros(tuple(int(d) for d in sys.argv[3].split(','))))\n"
            "net.export(sys.argv[2], epoch=0)\n")
    prefix = folder / name
    subprocess.run([sys.executable, "-c", code, name, str(prefix), ",".join(map(str, shape))], check=True,
                   capture_output=True, cwd=str(REPO), timeout=600)
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")


def mxnet_model(name: str, folder: Path) -> Optional[tuple[Path, Path, tuple[int, ...], str]]:
    if name in MTCNN:
        models = Path(os.environ.get("X2ONNX_MODELS_DIR", REPO.parent / "shared" / "models")) / "mxnet" / "mtcnn"
        symbol, params = models / f"{name}-symbol.json", models / f"{name}-0001.params"
        if not symbol.is_file():
            return None
        return symbol, params, MTCNN[name], "MTCNN, real weights"
    symbol, params = prepare_gluon(name, folder, GLUON[name])
    return symbol, params, GLUON[name], "gluon model zoo, random weights"


def _x2onnx_command() -> list[str]:
    script = Path(sys.executable).parent / "x2onnx"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "x2onnx.cli"]


def time_command(cmd: list[str], repeat: int) -> dict[str, Any]:
    """Best wall time of ``cmd`` over ``repeat`` runs; a failure keeps its time and last line."""
    best: Optional[float] = None
    error = None
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), timeout=1800,
                              env={**os.environ, "MXNET_SUBGRAPH_VERBOSE": "0"})
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            error = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:200]
        best = seconds if best is None else min(best, seconds)
    return {"seconds": round(best or 0.0, 2), **({"error": error} if error else {})}


def bench_mxnet(name: str, folder: Path, repeat: int) -> Optional[dict[str, Any]]:
    found = mxnet_model(name, folder)
    if found is None:
        return {"model": name, "note": "not found (set X2ONNX_MODELS_DIR)"}
    symbol, params, shape, source = found
    out = folder / f"{name}.onnx"
    dims = ",".join(map(str, shape))
    base = [*_x2onnx_command(), "mxnet", str(symbol), str(params), "--input-shape", f"data:{dims}", "-q",
            "-o", str(out)]
    commands = {
        "stock": [sys.executable, "-c", _STOCK, str(symbol), str(params), dims, str(folder / f"{name}.stock.onnx")],
        "x2onnx": base,
        "x2onnx-nv-ns": base + ["--no-verify", "--no-simplify"],
    }
    row: dict[str, Any] = {"model": name, "source": source, "params_mb": round(params.stat().st_size / 2**20, 2)}
    for mode, cmd in commands.items():
        got = time_command(cmd, repeat)
        row[f"{mode}_s"] = got["seconds"]
        if "error" in got:
            row[f"{mode}_error"] = got["error"]
    for mode in ("x2onnx", "x2onnx-nv-ns"):
        row[f"{mode}_ratio"] = round(row[f"{mode}_s"] / row["stock_s"], 2) if row.get("stock_s") else None
    return row


def _mx_cell(row: dict[str, Any], mode: str) -> str:
    if f"{mode}_s" not in row:
        return "-"
    text = f"{row[f'{mode}_s']:.3g} s"
    if row.get(f"{mode}_ratio") is not None:
        text += f" ({row[f'{mode}_ratio']:.2f}x)"
    if f"{mode}_error" in row:
        text += " FAILED: " + row[f"{mode}_error"][:90]
    return text


def mxnet_section(rows: list[dict[str, Any]], repeat: int) -> Section:
    table = [{"model": r["model"], "source": r.get("source", r.get("note")), "params_mb": r.get("params_mb"),
              "stock": _mx_cell(r, "stock"), "default": _mx_cell(r, "x2onnx"), "nvns": _mx_cell(r, "x2onnx-nv-ns")}
             for r in rows]
    return Section(
        key="x2onnx_cli",
        title="x2onnx mxnet: command wall time against MXNet's stock exporter",
        intro=("Wall time of the whole command in a fresh process (interpreter start-up and imports included), "
               "best of the runs; (x) = against the stock exporter (`mxnet.onnx.export_model` with the "
               "compatibility shims MXNet 1.9.1 needs beside today's onnx) on the same model. A command that "
               "fails is shown with its time until the failure. Targets: default flags (simplify + verify "
               "against MXNet) <= 2x stock; `--no-verify --no-simplify` <= 1.2x stock."),
        columns=[("model", "model"), ("source", "weights"), ("params_mb", "params MB"), ("stock", "stock exporter"),
                 ("default", "x2onnx mxnet (x)"), ("nvns", "x2onnx mxnet --no-verify --no-simplify (x)")],
        rows=table,
        notes=["MXNet 1.9.1's stock exporter has no translation for MTCNN's SoftmaxActivation and SoftmaxOutput "
               "with a label, and writes invalid ONNX for det4's SliceChannel: its MTCNN rows are times until "
               "that failure."],
        meta={"runs per figure": repeat, **machine()},
    )


# --- main --------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    from tests.support.light_weights import LIGHT_MODELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Run from the repository root. See the module docstring for what is measured.")
    parser.add_argument("--models", nargs="*", default=list(LIGHT_MODELS),
                        help=f"light models for onnx2x torch (default: all: {' '.join(LIGHT_MODELS)}); none: skip")
    parser.add_argument("--mxnet-models", nargs="*", default=list(MTCNN) + list(GLUON),
                        help="MXNet models for x2onnx mxnet (MTCNN det1..det4 from $X2ONNX_MODELS_DIR, gluon "
                             f"model-zoo names {', '.join(GLUON)}); none: skip")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per figure (default 3)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"one run of {SMOKE_MODEL} and {SMOKE_MXNET} (a quick check that the benchmark runs; "
                             "no thresholds)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    for key in ("models", "mxnet_models"):  # "none" (as --help says) or no names: skip that half
        if getattr(args, key) == ["none"]:
            setattr(args, key, [])
    if args.smoke:
        args.models, args.mxnet_models, args.repeat = [SMOKE_MODEL], [SMOKE_MXNET], 1
    out_dir = Path(args.out_dir) if args.out_dir else REPO / "docs"
    with tempfile.TemporaryDirectory(prefix="bench_conversion_") as tmp:
        if args.models:
            rows = []
            for name in args.models:
                rows.append(bench_onnx2x(name, Path(tmp), args.repeat, ONNX2X_MODES))
                print(json.dumps(rows[-1]), flush=True)
            if not args.no_write:
                write_section(onnx2x_section(rows, args.repeat), out_dir / "BENCHMARKS.json", out_dir / "BENCHMARKS.md")
        if args.mxnet_models:
            rows = []
            for name in args.mxnet_models:
                rows.append(bench_mxnet(name, Path(tmp), args.repeat))
                print(json.dumps(rows[-1]), flush=True)
            if not args.no_write:
                write_section(mxnet_section(rows, args.repeat), out_dir / "BENCHMARKS.json", out_dir / "BENCHMARKS.md")
    if not args.no_write:
        print(f"wrote {out_dir / 'BENCHMARKS.json'} and {out_dir / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
