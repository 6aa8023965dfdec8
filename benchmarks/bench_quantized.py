"""Forward latency of modules converted from onnxruntime-quantized graphs, against onnxruntime.

What users quantize with onnxruntime's tools, each converted by ``onnx2x.torch.convert`` with
default flags and timed against onnxruntime on the same file (one thread, calls interleaved,
median of ``--repeat``):

* ``bert_dynamic``: a BERT-base-sized encoder (hidden 768, 12 heads, FFN 3072, 2 layers, seeded
  weights) through ``quantize_dynamic`` (DynamicQuantizeLinear + MatMulInteger), at 1 x 128 tokens;
* ``bert_dynamic_ort``: the same after onnxruntime's extended graph optimizer, saved as a file
  (DynamicQuantizeMatMul, MatMulIntegerToFloat);
* ``bert_transformer_q``: BERT through onnxruntime's transformer optimizer, then
  ``quantize_dynamic`` (QAttention, QEmbedLayerNormalization);
* ``<light>_qop`` / ``<light>_qdq``: onnx's light model-zoo graphs (seeded weights of the real size)
  through ``quantize_static`` in QOperator format (QLinearConv, QLinearMatMul, ...) or its default
  QDQ format (QuantizeLinear/DequantizeLinear around float ops, which onnxruntime fuses into its
  integer kernels), at batch 1.

The converted module's outputs are checked against onnxruntime's first (max abs difference and
the output's scale are columns: quantized graphs agree bit for bit except where a float32 value
lands on a rounding boundary). Weights are quantized with ``reduce_range`` (``REDUCE_RANGE``), so
that onnxruntime computes exact integer products on CPUs without VNNI too. Run from the repository root::

    python benchmarks/bench_quantized.py                 # every graph
    python benchmarks/bench_quantized.py --smoke --out-dir /tmp/bench   # CI: one small graph each kind

Writes the section ``quantized`` of docs/BENCHMARKS.json and regenerates docs/BENCHMARKS.md
(``--out-dir`` elsewhere, ``--no-write`` prints only).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import Section, add_output_flags, geomean, machine, write_section_to  # noqa: E402

BERTS = ("bert_dynamic", "bert_dynamic_ort", "bert_transformer_q")
LIGHTS = ("squeezenet_qop", "shufflenet_qop", "inception_v2_qop", "densenet121_qop", "squeezenet_qdq", "shufflenet_qdq",
          "inception_v2_qdq")
GRAPHS = BERTS + LIGHTS
SMOKE = ("bert_dynamic", "squeezenet_qop")
TOKENS = 128
# 7-bit weights, as onnxruntime's docs advise for CPUs without VNNI: there its uint8 x int8 kernels
# add pairs of products in int16 with saturation, and its outputs stop being the exact integer
# arithmetic that the graph defines and the converted module computes (timings barely change).
REDUCE_RANGE = True


def _bert(folder: Path, hidden: int, layers: int) -> Path:
    """A BertModel with eager attention and seeded weights, exported with a dynamic batch and length."""
    import torch

    from tests.support.contrib_models import _export, _randomize, import_transformers

    tf = import_transformers()
    config = tf.BertConfig(vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                           max_position_embeddings=256)
    config._attn_implementation = "eager"
    model = tf.BertModel(config).eval()
    _randomize(model, 0, std=0.05)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]

    ids = torch.zeros(2, 8, dtype=torch.int64)
    names = ["input_ids", "attention_mask"]
    path = folder / f"bert{hidden}.onnx"
    _export(Encoder().eval(), (ids, torch.ones_like(ids)), path, names, ["last_hidden_state"],
            {n: {0: "batch", 1: "seq"} for n in names})
    return path


def build(name: str, folder: Path, smoke: bool) -> tuple[Path, dict[str, Any]]:
    """(quantized file, feeds) for graph ``name``."""
    import numpy as np

    from tests.support import quant_models as qm

    if name in BERTS:
        hidden, layers, tokens = (64, 1, 16) if smoke else (768, 2, TOKENS)
        source = _bert(folder, hidden, layers)
        if name == "bert_transformer_q":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fused = qm.transformer_optimized(source, folder / f"{name}_fused.onnx", num_heads=max(1, hidden // 64),
                                             hidden_size=hidden)
            path = folder / f"{name}.onnx"
            quantize_dynamic(str(fused), str(path), weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE,
                             extra_options={"DefaultTensorType": 1})  # FLOAT, for tensors without a type
        else:
            path = qm.quantize(source, folder / "bert_dynamic.onnx", "dynamic", reduce_range=REDUCE_RANGE)
            if name == "bert_dynamic_ort":
                path = qm.ort_optimized(path, folder / f"{name}.onnx")
        rng = np.random.default_rng(0)
        return path, {"input_ids": rng.integers(0, 1000, (1, tokens)).astype(np.int64),
                      "attention_mask": np.ones((1, tokens), np.int64)}
    import onnx

    from tests.support.light_weights import light_feed, load_light

    base, fmt = name.rsplit("_", 1)
    model = load_light(base, dynamic_batch=True)
    source = folder / f"{name}_float.onnx"
    onnx.save(model, str(source))
    feed = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    path = qm.quantize(source, folder / f"{name}.onnx", "qoperator" if fmt == "qop" else "qdq", reduce_range=REDUCE_RANGE,
                       feeds_of_seed=lambda seed: {feed: light_feed(model, 1, seed)})
    return path, {feed: light_feed(model, 1, 5)}


def bench(name: str, folder: Path, repeat: int, smoke: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from benchmarks.bench_onnx2torch import median_latency, onnxruntime_session
    from onnx2x.torch import convert

    path, feeds = build(name, folder, smoke)
    module = convert(str(path)).eval()
    torch.set_num_threads(1)
    session = onnxruntime_session(str(path), 1)
    inputs = [torch.from_numpy(feeds[i.name]) for i in session.get_inputs()]
    with torch.inference_mode():
        got = module(*inputs)
        got = (got[0] if isinstance(got, tuple) else got).numpy()
        want = session.run(None, feeds)[0]
        lat = median_latency({"onnx2x": lambda: module(*inputs), "onnxruntime": lambda: session.run(None, feeds)},
                             repeat)
    row = {"graph": name, "onnx2x_ms": round(lat["onnx2x"] * 1e3, 3),
           "onnxruntime_ms": round(lat["onnxruntime"] * 1e3, 3), "vs_ort": round(lat["onnx2x"] / lat["onnxruntime"], 3),
           "max_abs_diff": float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()),
           "scale": float(np.abs(want.astype(np.float64)).max())}
    print(json.dumps(row), flush=True)
    return row


def section(rows: list[dict[str, Any]], repeat: int) -> Section:
    shown = [dict(r, max_abs_diff=f"{r['max_abs_diff']:.2g} ({r['scale']:.2g})") for r in rows]
    return Section(
        key="quantized", title="onnx2x torch: forward latency of onnxruntime-quantized graphs",
        intro=("Median latency of the module `onnx2x.torch.convert` makes of a graph quantized with onnxruntime's "
               "tools (BERT-base-sized encoder at 1 x 128 tokens through quantize_dynamic, onnxruntime's optimizer, "
               "or its transformer optimizer then quantize_dynamic; light model-zoo graphs through quantize_static "
               "in QOperator or QDQ format at batch 1) against onnxruntime on the same file, one thread, calls "
               "interleaved. `python benchmarks/bench_quantized.py`."),
        columns=[("graph", "graph"), ("onnx2x_ms", "onnx2x ms"), ("onnxruntime_ms", "onnxruntime ms"),
                 ("vs_ort", "onnx2x / onnxruntime"), ("max_abs_diff", "max abs diff (scale)")],
        rows=shown, notes=[f"geometric mean onnx2x / onnxruntime {geomean([r['vs_ort'] for r in rows])}",
                           "scale 0: the quantized graph's output is all zeros on the seeded input (random weights "
                           "calibrated on two images; squeezenet's is onnxruntime's softmax over a size-1 axis, see "
                           "QLinearSoftmax); the timing is still that of every node."],
        meta={"repeat": repeat, **machine()})


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Run from the repository root. See the module docstring for what is measured.")
    parser.add_argument("--graphs", nargs="*", default=list(GRAPHS), choices=GRAPHS, metavar="GRAPH",
                        help=f"graphs to run (default: all: {' '.join(GRAPHS)})")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per figure (default 20)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{' and '.join(SMOKE)} (BERT at hidden 64, 1 layer, 16 tokens), 3 calls: checks that it runs")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.graphs, args.repeat = list(SMOKE), 3
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer's pre-processing advice
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.graphs:
            rows.append(bench(name, Path(tmp), args.repeat, args.smoke))
    if not args.no_write:
        write_section_to(section(rows, args.repeat), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
