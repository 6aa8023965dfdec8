"""Round trip of an ONNX model: ONNX -> PyTorch -> ONNX, compared with onnxruntime, on your own inputs.

    python examples/onnx_model_roundtrip.py [MODEL.onnx] [--inputs INPUTS.npz] [--out reports/]

Without MODEL.onnx a small CNN is built with onnx.helper. When a stage differs, the report names
the first node whose output is out of tolerance while its inputs agree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from roundtrip import onnx_roundtrip  # noqa: E402


def tiny_cnn() -> onnx.ModelProto:
    """image (1,3,16,16) -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits (1,4)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n)
               for n, s in (("W", (8, 3, 3, 3)), ("B", (8,)), ("fc_W", (4, 8)), ("fc_B", (4,)))]
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc_W", "fc_B"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny_cnn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="ONNX model (default: a small CNN built here)")
    parser.add_argument("--inputs", help=".npz with the model inputs by name (default: seeded random)")
    parser.add_argument("--out", default=".", help="folder for report.md and report.json (default: here)")
    args = parser.parse_args()

    model = args.model or tiny_cnn()
    inputs = [args.inputs] if args.inputs else None  # same syntax as the CLI's --input
    report = onnx_roundtrip(model, inputs=inputs, back_to_onnx=True)
    print(report.table())
    for stage in report.stages:
        if stage.locator is not None:
            print(stage.locator.describe())
    report.write_markdown(str(Path(args.out) / "report.md"))
    report.write_json(str(Path(args.out) / "report.json"))
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
