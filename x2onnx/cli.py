"""``x2onnx``: export models to ONNX (today: MXNet 1.x symbol + params).

Exit codes: 0 done, 1 internal error (a bug: rerun with --debug and report it), 2 bad input
(missing or unreadable files, bad --input-shape), 3 unsupported op or outputs that differ from
MXNet. On any failure no output file is written.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from common.cli import add_common_flags, parse_dtypes, parse_shapes, run_cli, setup_logging
from common.errors import ModelLoadError, ShapeError

log = logging.getLogger("x2onnx")

_MXNET_EPILOG = """\
inputs:
  SYMBOL.json PARAMS     an MXNet symbol file and its parameters (net-symbol.json net-0000.params)
  PREFIX --epoch N       MXNet's checkpoint naming: reads PREFIX-symbol.json and PREFIX-000N.params
  Input names come from the symbol: its arguments that are neither weights nor training labels
  (e.g. 'prob1_label' of a SoftmaxOutput head is not an ONNX input). Shapes default to what the
  symbol declares (mx.sym.var(..., shape=...)); otherwise give them with --input-shape.

what happens:
  1. MXNet 1.9.1's own exporter converts the graph (repaired by mx2onnx_patches); weights become
     initializers, graph outputs keep MXNet's order and names.
  2. onnx-simplifier simplifies the model (skip with --no-simplify).
  3. MXNet and onnxruntime run on the same seeded random inputs (uniform in [-1, 1]); every
     output's max-abs and relative error is printed. Out of tolerance -> exit 3 naming the first
     divergent node, and no output file (skip with --no-verify).

examples:
  x2onnx mxnet det1-symbol.json det1-0001.params --input-shape data:1,3,12,12 -o det1.onnx
  x2onnx mxnet models/det1 --epoch 1 --input-shape data:1,3,12,12
  x2onnx mxnet resnet50-symbol.json resnet50-0000.params --dynamic-batch --opset 17
  x2onnx mxnet net-symbol.json net-0000.params --input-shape data:1,3,224,224 \\
         --input-shape mask:1,224,224 --input-dtype mask:int64 --no-simplify

exit codes: 0 ok, 1 internal error, 2 bad input, 3 unsupported op or outputs differ from MXNet
"""


def _add_mxnet_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mxnet",
        help="export an MXNet symbol + params to ONNX",
        description="Export an MXNet 1.x model (symbol JSON + .params) to ONNX, simplify it and check "
                    "it against MXNet on seeded random inputs.",
        epilog=_MXNET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="SYMBOL.json|PREFIX",
                   help="the symbol file (e.g. det1-symbol.json), or with --epoch the checkpoint prefix (e.g. det1)")
    p.add_argument("params", metavar="PARAMS", nargs="?",
                   help="the parameters file (e.g. det1-0001.params); leave out with --epoch")
    p.add_argument("--epoch", type=int, metavar="N",
                   help="checkpoint epoch: read PREFIX-symbol.json and PREFIX-%%04d.params "
                        "(e.g. det1 --epoch 1 reads det1-symbol.json and det1-0001.params)")
    p.add_argument("-o", "--output", metavar="OUT.onnx",
                   help="where to write the model (default: the symbol's name without -symbol.json plus .onnx, "
                        "in the current folder; e.g. det1-symbol.json -> ./det1.onnx). Written only on success; "
                        "models over 2 GB get their weights in OUT.onnx.data beside it")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME:DIMS",
                   help="shape of an input, repeatable (e.g. --input-shape data:1,3,224,224); inputs not named "
                        "take the shape the symbol declares")
    p.add_argument("--input-dtype", action="append", default=[], metavar="NAME:DTYPE",
                   help="numpy dtype of an input, repeatable (e.g. --input-dtype data:float16; default float32)")
    p.add_argument("--opset", type=int, default=13, metavar="N",
                   help="ONNX opset to export at (default 13; 12 and 13 are what MXNet translates for, higher "
                        "works where the emitted nodes are valid there, e.g. --opset 17); the IR version "
                        "follows the opset")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="leave dimension 0 of every input (and the outputs that follow it) free, named 'batch'; "
                        "e.g. export at 1,3,224,224 and run at 8,3,224,224")
    p.add_argument("--no-simplify", action="store_true",
                   help="skip onnx-simplifier (keeps every node MXNet's exporter produced)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the comparison with MXNet (faster; the model is still checked by onnx.checker)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the random verification inputs (default 0), e.g. --seed 7")
    p.add_argument("--atol", type=float, default=1e-4, metavar="A",
                   help="absolute tolerance of the verification (default 1e-4), e.g. --atol 1e-5")
    p.add_argument("--rtol", type=float, default=1e-4, metavar="R",
                   help="relative tolerance of the verification (default 1e-4), e.g. --rtol 1e-3")
    add_common_flags(p)
    p.set_defaults(handler=_run_mxnet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="x2onnx",
        description="Export models of other frameworks to ONNX (today: MXNet 1.x), simplified and checked "
                    "against the original framework.",
        epilog="commands:\n  mxnet   x2onnx mxnet det1-symbol.json det1-0001.params --input-shape data:1,3,12,12\n\n"
               "Run 'x2onnx mxnet --help' for every option with examples.\n"
               "exit codes: 0 ok, 1 internal error, 2 bad input, 3 unsupported op or outputs differ",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_mxnet_parser(sub)
    return parser


def default_output(symbol_path: str) -> Path:
    name = Path(symbol_path).name
    for suffix in ("-symbol.json", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name + ".onnx")


def _run_mxnet(args: argparse.Namespace) -> int:
    from x2onnx.mxnet import loading
    from x2onnx.mxnet.export import export_report
    from x2onnx.mxnet.writer import save_model

    if args.epoch is not None:
        if args.params:
            raise ModelLoadError("give either SYMBOL.json PARAMS or PREFIX --epoch N, not both")
        symbol_path, params_path = (str(p) for p in loading.checkpoint_paths(args.model, args.epoch))
    else:
        if not args.params:
            raise ModelLoadError("missing PARAMS: give SYMBOL.json PARAMS, or PREFIX --epoch N", file=args.model)
        symbol_path, params_path = args.model, args.params
    shapes = parse_shapes(args.input_shape)
    dtypes = parse_dtypes(args.input_dtype)
    if args.atol < 0 or args.rtol < 0:
        raise ShapeError("--atol and --rtol must be >= 0")
    output = Path(args.output) if args.output else default_output(symbol_path)
    done = export_report(symbol_path, params_path, shapes or None, opset=args.opset,
                         dynamic_batch=args.dynamic_batch, simplify=not args.no_simplify,
                         verify=not args.no_verify, input_dtypes=dtypes or None, seed=args.seed,
                         atol=args.atol, rtol=args.rtol)
    save_model(done.model, output)
    if not args.quiet:
        graph = done.model.graph
        inputs = ", ".join(f"{n}:{','.join(map(str, s))}" for n, s in done.inputs.shapes.items())
        print(f"wrote {output} (opset {args.opset}, {len(graph.node)} nodes; inputs {inputs}; "
              f"outputs {', '.join(o.name for o in graph.output)})")
        if done.labels:
            print(f"training-only inputs left out: {', '.join(done.labels)}")
        if done.report is not None:
            for check in done.report.outputs:
                print(f"verified {check.line()}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    return run_cli(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
