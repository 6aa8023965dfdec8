"""``roundtrip``: convert a model through every supported form and compare each with the source.

Exit status: 0 when every stage is within tolerance, 3 when a stage differs or a conversion is
unsupported, 2 for bad input (missing file, wrong shape), 1 for an internal error.
"""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from typing import Optional, Sequence

from common.cli import add_common_flags, cli_main, parse_shapes
from common.verify.options import add_input_flags, add_tolerance_flags, image_options
from common.verify.report import RoundTripReport

log = logging.getLogger(__name__)

DESCRIPTION = """\
Convert a model through every form this toolkit supports and compare each form with the source
on the same inputs: one table with max abs error, max relative error, mse, cosine similarity,
elements out of tolerance and the time of each stage. When a stage differs, the first node whose
output is out of tolerance (while its inputs agree) is named.

examples:
  roundtrip demo
  roundtrip mxnet det1-symbol.json det1-0001.params --input-shape data:1,3,12,12 --back-to-onnx
  roundtrip onnx model.onnx --input-shape input:1,3,224,224 --report report.md --json report.json
"""

EPILOG = "exit status: 0 every stage within tolerance; 3 a stage differs or is unsupported; 2 bad input; 1 internal error"


def _add_run_flags(p: argparse.ArgumentParser, *, rtol: Optional[float] = None, atol: Optional[float] = None,
                   user_inputs: bool = True) -> None:
    add_tolerance_flags(p, rtol=rtol, atol=atol)
    if user_inputs:
        add_input_flags(p)
    else:
        p.add_argument("--seed", type=int, default=0,
                       help="seed of the weights and of the random input (default 0); e.g. --seed 7")
    p.add_argument("--report", metavar="FILE.md", help="also write a markdown report; e.g. --report roundtrip.md")
    p.add_argument("--json", metavar="FILE", help="also write a machine-readable JSON report; e.g. --json roundtrip.json")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="torch.onnx.export flavour for the back-to-ONNX stage (default auto: dynamo, falling back "
                        "to torchscript)")
    p.add_argument("--no-locate", dest="locate", action="store_false",
                   help="do not search for the first divergent node when a stage differs")
    add_common_flags(p)


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=78)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roundtrip", description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    mx = sub.add_parser("mxnet", allow_abbrev=False, help="MXNet -> ONNX -> PyTorch (-> ONNX), compared with MXNet",
                        description=_wrap("MXNet (reference) -> ONNX (x2onnx, run by onnxruntime) -> PyTorch "
                                          "(onnx2x) [-> ONNX again with torch.onnx.export]; every stage compared "
                                          "with MXNet.") + "\n\n"
                                    "example:\n  roundtrip mxnet det1-symbol.json det1-0001.params "
                                    "--input-shape data:1,3,12,12 --back-to-onnx",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    mx.add_argument("symbol", metavar="SYMBOL.json", help="MXNet symbol file, e.g. det1-symbol.json")
    mx.add_argument("params", metavar="PARAMS", help="MXNet parameters file, e.g. det1-0001.params")
    mx.add_argument("--input-shape", action="append", default=[], metavar="NAME:D1,D2,...",
                    help="shape of an input (repeatable; MXNet symbols do not record them); e.g. --input-shape data:1,3,12,12")
    mx.add_argument("--back-to-onnx", action="store_true",
                    help="also export the PyTorch module back to ONNX with torch.onnx.export and compare it")
    mx.add_argument("--opset", type=int, default=13, help="ONNX opset of the MXNet export (default 13); e.g. --opset 17")
    mx.add_argument("--no-simplify", dest="simplify", action="store_false",
                    help="skip onnx-simplifier in the conversions")
    mx.add_argument("--save-dir", metavar="DIR",
                    help="keep the ONNX files made on the way and the PyTorch model (NAME.pt + NAME.py, loadable "
                         "without this toolkit; loaded back and compared with MXNet) in DIR; e.g. --save-dir out/")
    mx.add_argument("--trainable", action="store_true",
                    help="convert to PyTorch for fine-tuning (parameters require grad, BatchNorm not folded and "
                         "updating its statistics in train(), Dropout active in train()); the saved model is this one")
    mx.add_argument("--check-gradients", action="store_true",
                    help="also backpropagate a seeded loss (sum of each output times a fixed random tensor) in MXNet "
                         "and in the trainable PyTorch module and compare every parameter's gradient by MXNet name, "
                         "and the input's, in eval mode and (with BatchNorm) train mode; a disagreement is settled "
                         "by finite differences of MXNet's forward (exit 3 when PyTorch is wrong)")
    _add_run_flags(mx)
    mx.set_defaults(handler=_cmd_mxnet)

    ox = sub.add_parser("onnx", allow_abbrev=False, help="ONNX -> PyTorch -> ONNX, compared with onnxruntime",
                        description=_wrap("ONNX (reference, run by onnxruntime) -> PyTorch (onnx2x) -> ONNX "
                                          "again (torch.onnx.export); every stage compared with onnxruntime on the "
                                          "source model.") + "\n\n"
                                    "example:\n  roundtrip onnx model.onnx --input-shape input:1,3,224,224 --json r.json",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ox.add_argument("model", metavar="MODEL.onnx", help="ONNX model file, e.g. resnet18.onnx")
    ox.add_argument("--input-shape", action="append", default=[], metavar="NAME:D1,D2,...",
                    help="shape for an input with symbolic dimensions (repeatable); e.g. --input-shape input:1,3,224,224")
    ox.add_argument("--no-back-to-onnx", dest="back_to_onnx", action="store_false",
                    help="stop after PyTorch (skip torch.onnx.export)")
    ox.add_argument("--no-simplify", dest="simplify", action="store_false",
                    help="skip onnx-simplifier in the conversion to PyTorch")
    ox.add_argument("--save-dir", metavar="DIR", help="keep the re-exported ONNX file in DIR; e.g. --save-dir out/")
    _add_run_flags(ox)
    ox.set_defaults(handler=_cmd_onnx)

    demo = sub.add_parser("demo", allow_abbrev=False, help="the embedded demo network: MXNet -> ONNX -> PyTorch (no files needed)",
                          description=_wrap("Build a small MXNet network in code with seeded random weights "
                                            "(PReLU after Convolution and after FullyConnected, SliceChannel with "
                                            "separately consumed outputs, Pooling with pooling_convention='full'), "
                                            "convert it MXNet -> ONNX -> PyTorch and compare all forms on one input "
                                            "(tolerance 1e-5). No network access, no files left behind.")
                          + "\n\nexample:\n  roundtrip demo --back-to-onnx --report demo.md",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--back-to-onnx", action="store_true",
                      help="also export the PyTorch module back to ONNX with torch.onnx.export and compare it")
    demo.add_argument("--save-model", metavar="DIR",
                      help="also write demo-symbol.json and demo-0000.params to DIR, e.g. to try "
                           "'roundtrip mxnet DIR/demo-symbol.json DIR/demo-0000.params --input-shape data:1,3,24,24'")
    _add_run_flags(demo, rtol=1e-5, atol=1e-5, user_inputs=False)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _finish(report: RoundTripReport, args: argparse.Namespace) -> int:
    """Print the table (and divergent nodes), write the reports, return the exit status."""
    if args.report:
        report.write_markdown(args.report)
    if args.json:
        report.write_json(args.json)
    if not args.quiet:
        print(report.table())
        for stage in report.stages:
            if stage.locator is not None:
                print(f"\n[{stage.name}] " + stage.locator.describe())
        for gradients in report.gradients:
            print()
            print("\n".join(gradients.lines()))
    for gradients in report.gradients:
        for warning in gradients.warnings():
            print(warning, file=sys.stderr)
    code = report.exit_code()
    if code:
        failed = report.first_error()
        wrong = next((g for g in report.gradients if not g.ok), None)
        if failed is not None:
            line = f"{failed.name}: {failed.error}"
        elif all(s.ok for s in report.stages) and wrong is not None:
            line = wrong.error()
        else:
            line = report.verdict()
        print(f"error: {line}", file=sys.stderr)
    return code


def _cmd_mxnet(args: argparse.Namespace) -> int:
    from .pipeline import mxnet_roundtrip

    report = mxnet_roundtrip(args.symbol, args.params, input_shapes=parse_shapes(args.input_shape),
                             inputs=args.input, seed=args.seed, image=image_options(args),
                             back_to_onnx=args.back_to_onnx, rtol=args.rtol, atol=args.atol, opset=args.opset,
                             simplify=args.simplify, locate_failures=args.locate, exporter=args.exporter,
                             save_dir=args.save_dir, trainable=args.trainable, check_gradients=args.check_gradients)
    return _finish(report, args)


def _cmd_onnx(args: argparse.Namespace) -> int:
    from .pipeline import onnx_roundtrip

    report = onnx_roundtrip(args.model, input_shapes=parse_shapes(args.input_shape), inputs=args.input,
                            seed=args.seed, image=image_options(args), back_to_onnx=args.back_to_onnx,
                            rtol=args.rtol, atol=args.atol, simplify=args.simplify, locate_failures=args.locate,
                            exporter=args.exporter, save_dir=args.save_dir)
    return _finish(report, args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(seed=args.seed, back_to_onnx=args.back_to_onnx, rtol=args.rtol, atol=args.atol,
                      save_model=args.save_model, exporter=args.exporter)
    return _finish(report, args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return cli_main(build_parser, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
