"""Forward latency of converted small graphs against the eager modules they came from and onnxruntime.

Corpus (each exported by ``torch.onnx.export``, TorchScript exporter, opset 17, dynamic axes, as
users export them):

* transformers built from configs with seeded weights (``tests/support/encoder_corpus.py``):
  BERT, DistilBERT, ALBERT, ELECTRA, RoBERTa, GPT-2, T5 encoder, T5, ViT, MobileViT;
* hand-built PyTorch nets (``tests/support/small_nets.py``): bidirectional LSTM, GRU, ConvNeXt
  block, ResNet block, MobileNetV2 inverted residual, transformer MLP, dilated temporal convnet,
  a diffusion UNet decoder stage (GroupNorm, SiLU, 2x nearest upsampling, transposed convolution,
  symbolic image size).

For every graph, thread count (``torch.set_num_threads`` == onnxruntime's
``intra_op_num_threads``) and batch: the median latency of the eager module, of the module
``onnx2x.torch.convert`` makes of the file (default flags), of onnxruntime on the file, and of
onnx2torch / onnx2pytorch / onnx2fx where installed (a peer that fails is a cell, not a crash),
all in one process with calls interleaved (``bench_onnx2torch.median_latency``). Text models get
16 tokens, images their configured size. Every converted output is checked against the eager
output first (max |difference| in the row).

Targets (issue 12): with one thread, onnx2x / onnxruntime <= 1.5 in geometric mean, and no graph
slower than its eager module (onnx2x / eager <= 1.0).

Run from the repository root::

    python benchmarks/bench_small_graphs.py                          # everything (a few minutes)
    python benchmarks/bench_small_graphs.py --graphs bert lstm_bi --threads 1 --batches 1 --repeat 50
    python benchmarks/bench_small_graphs.py --smoke --out-dir /tmp/bench   # CI: two graphs, tiny repeats

Writes the section ``small_graphs`` of docs/BENCHMARKS.json and regenerates docs/BENCHMARKS.md
(``--out-dir`` elsewhere, ``--no-write`` prints only).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import Section, add_output_flags, geomean, machine, report  # noqa: E402

TRANSFORMERS = ("bert", "distilbert", "albert", "electra", "roberta", "gpt2", "t5_encoder", "t5", "vit", "mobilevit")
HAND_BUILT = ("lstm_bi", "gru", "convnext_block", "resnet_block", "inverted_residual", "transformer_mlp", "tcn",
              "unet_up_block")
GRAPHS = TRANSFORMERS + HAND_BUILT
TOKENS = 16
SMOKE = ("bert", "lstm_bi")


def _peers() -> dict[str, Callable[[str], Any]]:
    """Other ONNX -> PyTorch converters that happen to be installed (none is a dependency)."""
    import onnx

    from benchmarks.bench_onnx2torch import optional_converters

    makers = dict(optional_converters())
    try:
        import onnx2fx  # type: ignore[import-not-found]

        makers["onnx2fx"] = onnx2fx.convert
    except ImportError:
        pass
    return {name: (lambda path, make=make: make(onnx.load(path))) for name, make in makers.items()}


def _export(name: str, folder: Path) -> tuple[Any, Path, Callable[[int, Any], tuple]]:
    """(eager module, exported file, sample(batch, generator) -> inputs)."""
    if name in TRANSFORMERS:
        from tests.support import encoder_corpus as corpus

        module = corpus.encoder(name)
        path = corpus.export(module, folder / f"{name}.onnx", opset=17, family=name)
        return module, path, lambda batch, gen: corpus.sample(name, batch, TOKENS, gen)
    from tests.support import small_nets

    module = small_nets.build(name)
    path = small_nets.export(module, name, folder / f"{name}.onnx")
    return module, path, lambda batch, gen: (small_nets.sample(name, batch, gen),)


def _first(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return out[0]
    return getattr(out, "last_hidden_state", out)


def bench_graph(name: str, folder: Path, threads_list: list[int], batches: list[int], repeat: int) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    from benchmarks.bench_onnx2torch import latency_columns, median_latency, onnxruntime_session
    from onnx2x.torch import convert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager, path, sample = _export(name, folder)
    converted = convert(str(path)).eval()
    peers: dict[str, Any] = {}
    peer_errors: dict[str, str] = {}
    for peer, make in _peers().items():
        try:
            peers[peer] = make(str(path)).eval()
        except Exception as exc:  # noqa: BLE001 - a failing peer is a cell of its row
            peer_errors[peer] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        sess = onnxruntime_session(str(path), threads)
        names = [i.name for i in sess.get_inputs()]
        for batch in batches:
            inputs = sample(batch, torch.Generator().manual_seed(batch))
            feeds = {n: t.numpy() for n, t in zip(names, inputs)}
            row: dict[str, Any] = {"graph": name, "threads": threads, "batch": batch, **{f"{k}_error": v for k, v in peer_errors.items()}}
            fns: dict[str, Callable[[], Any]] = {}
            with torch.inference_mode():
                want = _first(eager(*inputs)).numpy()
                row["max_abs_diff"] = float(np.abs(_first(converted(*inputs)).numpy() - want).max())
                row["scale"] = float(np.abs(want).max())
                fns["eager"] = lambda: eager(*inputs)
                fns["onnx2x"] = lambda: converted(*inputs)
                fns["onnxruntime"] = lambda: sess.run(None, feeds)
                for peer, module in list(peers.items()):
                    try:
                        module(*inputs)
                    except Exception as exc:  # noqa: BLE001
                        row[f"{peer}_error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
                        continue
                    fns[peer] = (lambda m=module: m(*inputs))
                lat = median_latency(fns, repeat, block=1 if threads == 1 else 5)
            row.update(latency_columns(lat, ms_digits=3))
            for peer in peers:
                if peer in lat:
                    row[f"{peer}_vs_ort"] = round(lat[peer] / lat["onnxruntime"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (threads, batch): geometric means over the graphs, and the graphs slower than eager."""
    out = []
    for key in sorted({(r["threads"], r["batch"]) for r in rows}):
        group = [r for r in rows if (r["threads"], r["batch"]) == key]
        out.append({"threads": key[0], "batch": key[1], "graphs": len(group),
                    "geomean_vs_ort": geomean([r["vs_ort"] for r in group]),
                    "geomean_vs_eager": geomean([r["vs_eager"] for r in group]),
                    "geomean_eager_vs_ort": geomean([r["eager_vs_ort"] for r in group]),
                    "slower_than_eager": [r["graph"] for r in group if r["vs_eager"] > 1.0]})
    return out


def section(rows: list[dict[str, Any]], repeat: int) -> Section:
    peers = sorted({k[:-len("_vs_ort")] for r in rows for k in r if k.endswith("_vs_ort") and k != "eager_vs_ort"})
    columns = [("graph", "graph"), ("threads", "threads"), ("batch", "batch"), ("eager_ms", "eager ms"),
               ("onnx2x_ms", "onnx2x ms"), ("onnxruntime_ms", "onnxruntime ms"), ("vs_eager", "onnx2x / eager"),
               ("vs_ort", "onnx2x / onnxruntime"), ("eager_vs_ort", "eager / onnxruntime"),
               ("max_abs_diff", "max abs diff (scale)")]
    columns += [(f"{p}_vs_ort", f"{p} / onnxruntime") for p in peers]
    shown = [dict(r, max_abs_diff=f"{r['max_abs_diff']:.2g} ({r['scale']:.2g})") for r in rows]
    notes = [f"threads {s['threads']}, batch {s['batch']}: geometric mean onnx2x / onnxruntime {s['geomean_vs_ort']}, "
             f"onnx2x / eager {s['geomean_vs_eager']}, eager / onnxruntime {s['geomean_eager_vs_ort']}; slower than "
             f"eager: {', '.join(s['slower_than_eager']) or 'none'}" for s in summary(rows)]
    if not peers:
        notes.append("onnx2torch, onnx2pytorch and onnx2fx were not installed for this run.")
    return Section(
        key="small_graphs", title="onnx2x torch: forward latency of small exported graphs",
        intro=("Median latency of the eager PyTorch module, the module `onnx2x.torch.convert` makes of its "
               "`torch.onnx.export` file (default flags), and onnxruntime on the same file, in one process with "
               "calls interleaved; text models 16 tokens. Targets with one thread: onnx2x / onnxruntime <= 1.5 in "
               "geometric mean, no graph slower than its eager module. `python benchmarks/bench_small_graphs.py`."),
        columns=columns, rows=shown, notes=notes, meta={"repeat": repeat, **machine()})


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Run from the repository root. See the module docstring for what is measured.")
    parser.add_argument("--graphs", nargs="*", default=list(GRAPHS), choices=GRAPHS, metavar="GRAPH",
                        help=f"graphs to run (default: all: {' '.join(GRAPHS)})")
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per figure (default 30)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{' and '.join(SMOKE)}, one thread, batch 1, 3 calls (checks that the benchmark runs)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.graphs, args.threads, args.batches, args.repeat = list(SMOKE), [1], [1], 3
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.graphs:
            rows += bench_graph(name, Path(tmp), args.threads, args.batches, args.repeat)
    report(section(rows, args.repeat), summary(rows), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
