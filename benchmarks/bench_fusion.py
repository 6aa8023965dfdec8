"""Forward latency of a plain transformer export with and without onnx2x's pattern fusions.

A BERT (default: hidden 256, 4 layers, 4 heads, sequence 128, batch 1; seeded random weights,
eager attention) exported by ``torch.onnx.export`` at opset 14, so LayerNorm, GELU and attention
are chains of elementwise ops, is converted twice -- ``fuse=True`` (``F.layer_norm``, ``F.gelu``,
``F.scaled_dot_product_attention``, ``F.linear``) and ``fuse=False`` -- and both are timed against
onnxruntime with the same thread count (``torch.set_num_threads`` == ORT ``intra_op_num_threads``).

Run from the repository root::

    python benchmarks/bench_fusion.py                     # one thread, BERT-small
    python benchmarks/bench_fusion.py --threads 2 --repeat 50 --model gpt2
    python benchmarks/bench_fusion.py --save /tmp/bert.onnx            # keep the exported graph
    PYTHONPATH=/other/checkout python benchmarks/bench_fusion.py --onnx /tmp/bert.onnx  # another converter

Prints one JSON row: median milliseconds per call and the ratios to onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: PYTHONPATH may point the converter at another checkout


def bench(kind: str, hidden: int, layers: int, heads: int, seq: int, batch: int, threads: int,
          repeat: int, onnx_path: Optional[str] = None, save: Optional[str] = None) -> dict[str, Any]:
    import numpy as np
    import onnx
    import torch

    from benchmarks.bench_onnx2torch import median_latency, onnxruntime_session
    from onnx2x.torch import convert

    if onnx_path:
        model = onnx.load(onnx_path)
    else:
        from tests.support.fusion_models import export_plain

        with tempfile.TemporaryDirectory() as tmp:
            path = export_plain(kind, Path(tmp) / f"{kind}.onnx", hidden=hidden, layers=layers, heads=heads,
                                batch=batch, seq=seq)
            model = onnx.load(str(path))
        if save:
            onnx.save(model, save)
    torch.set_num_threads(threads)
    sess = onnxruntime_session(model.SerializeToString(), threads)
    modules = {"fused": convert(model, fuse=True).eval(), "unfused": convert(model, fuse=False).eval()}
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 64, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq - seq // 4:] = 0  # some padding, as a real batch has
    row: dict[str, Any] = {"model": kind, "hidden": hidden, "layers": layers, "seq": seq, "batch": batch,
                           "threads": threads}
    fns: dict[str, Callable[[], Any]] = {"onnxruntime": lambda: sess.run(None, {"ids": ids, "mask": mask})}
    with torch.inference_mode():
        ref = sess.run(None, {"ids": ids, "mask": mask})[0]
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        for name, gm in modules.items():
            row[f"{name}_max_abs_diff"] = float(np.abs(gm(t_ids, t_mask).numpy() - ref).max())
            fns[name] = (lambda m=gm: m(t_ids, t_mask))
        lat = median_latency(fns, repeat, block=1 if threads == 1 else 5)
    for name, seconds in lat.items():
        row[f"{name}_ms"] = round(seconds * 1e3, 2)
    for name in modules:
        row[f"{name}_vs_ort"] = round(lat[name] / lat["onnxruntime"], 3)
    row["speedup"] = round(lat["unfused"] / lat["fused"], 3)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("bert", "gpt2"), default="bert")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--onnx", metavar="PATH", help="time this export (inputs ids, mask) instead of exporting one")
    p.add_argument("--save", metavar="PATH", help="also save the exported graph here")
    a = p.parse_args()
    row = bench(a.model, a.hidden, a.layers, a.heads, a.seq, a.batch, a.threads, a.repeat, a.onnx, a.save)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
