"""Round trip of a gluon model-zoo network: MXNet -> ONNX -> PyTorch -> ONNX, compared with MXNet.

    python examples/mxnet_model_zoo_roundtrip.py --model mobilenet0.25 --size 32 --out reports/

The network gets seeded random weights (no download); the report is printed and written as
markdown and JSON. Exit status 0 when every stage is within 1e-4 of MXNet.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from mx2onnx_patches.mxnet_import import import_mxnet  # noqa: E402
from roundtrip import mxnet_roundtrip  # noqa: E402


def export_gluon_model(name: str, size: int, folder: Path) -> tuple[Path, Path]:
    """Save a model-zoo network as NAME-symbol.json + NAME-0000.params (MXNet's checkpoint format)."""
    mx = import_mxnet()
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(0)
    net = vision.get_model(name, pretrained=False, classes=10)
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size)))
    net.export(str(folder / name), epoch=0)
    return folder / f"{name}-symbol.json", folder / f"{name}-0000.params"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet0.25", help="gluon model-zoo name (default mobilenet0.25)")
    parser.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    parser.add_argument("--out", default=".", help="folder for report.md and report.json (default: here)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        symbol, params = export_gluon_model(args.model, args.size, Path(tmp))
        # the round trip itself: these lines are all a script of your own needs
        report = mxnet_roundtrip(symbol, params, input_shapes={"data": (1, 3, args.size, args.size)},
                                 back_to_onnx=True, rtol=1e-4, atol=1e-4)
    print(report.table())
    out = Path(args.out)
    report.write_markdown(str(out / "report.md"))
    report.write_json(str(out / "report.json"))
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
