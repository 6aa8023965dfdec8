"""``x2onnx``: export models to ONNX (today: MXNet 1.x symbol + params).

Exit codes: 0 done, 1 internal error (a bug: rerun with --debug and report it), 2 bad input
(missing or unreadable files, bad --input-shape), 3 unsupported op or outputs that differ from
MXNet. On any failure no output file is written. Several models in one command run in worker
processes (``-j N``, :mod:`common.batch`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from common import progress
from common.batch import Job, add_jobs_flag, names_a_folder, refuse_clashes, run_jobs
from common.cli import add_common_flags, cli_main, parse_dtypes, parse_shapes
from common.errors import ConversionError, ModelLoadError, ShapeError
from common.progress import Progress, wants_progress
from common.verify.options import add_input_flags, add_tolerance_flags, check_tolerances, image_options, verify_json

log = logging.getLogger("x2onnx")

_MXNET_EPILOG = """\
inputs:
  SYMBOL.json PARAMS     an MXNet symbol file and its parameters (net-symbol.json net-0000.params)
  PREFIX --epoch N       MXNet's checkpoint naming: reads PREFIX-symbol.json and PREFIX-000N.params
  Input names come from the symbol: its arguments that are neither weights nor training labels
  (a variable that only feeds a loss head's label, whatever its name: 'prob1_label' of a
  SoftmaxOutput head is not an ONNX input; a shape given for it is accepted and not needed).
  Shapes default to what the symbol declares (mx.sym.var(..., shape=...), read as MXNet reads it,
  Python-2 '(1L, 3L, 224L, 224L)' included); otherwise give them with --input-shape. Symbols saved
  by MXNet 0.8 to 1.9 load through MXNet's own upgrade; what MXNet refuses is refused in its words.

what happens:
  1. MXNet 1.9.1's own exporter converts the graph (repaired by mx2onnx_patches); weights become
     initializers, graph outputs keep MXNet's order and names.
  2. onnx-simplifier simplifies the model (skip with --no-simplify); BatchNorm stays a node of its
     own, for runtimes to fold at load.
  3. MXNet (its plain executor) and onnxruntime run on the same seeded random inputs (uniform in
     [-1, 1]); every output's error relative to its scale is printed. Out of tolerance -> exit 3
     naming the MXNet node whose translation introduced the error, and no output file (skip with
     --no-verify). An output that fails is judged again against MXNet's own sensitivity (its output
     on inputs moved by one part in a million); detections after NMS are compared as sets.

several models at once:
  PREFIX1 PREFIX2 ... --epoch N                 several checkpoints of the same epoch
  A-symbol.json A.params B-symbol.json B.params  several pairs, told apart by the .json extension
  -j N exports N of them at the same time, each in its own worker process. Outputs go into the
  current folder, or into the folder -o names (end it with '/': -o out/). A model that fails (or
  crashes its worker) writes nothing and costs only itself; the others are exported as if run
  alone, to the same bytes. One line per model: 'ok INPUT -> OUT.onnx' or 'error: ...', then a
  count. Every option (--input-shape, --input-dtype, --opset, ...) applies to every model: for
  models whose inputs differ, run one command per model.

progress:
  On a terminal, a status line on stderr shows the stage of an export (load, convert, simplify,
  verify, write) or how many models of a batch are done. Nothing is shown with -q or when stderr
  is not a terminal (a pipe, a log file).

examples:
  x2onnx mxnet det1-symbol.json det1-0001.params --input-shape data:1,3,12,12 -o det1.onnx
  x2onnx mxnet models/det1 --epoch 1 --input-shape data:1,3,12,12
  x2onnx mxnet resnet50-symbol.json resnet50-0000.params --dynamic-batch --opset 17
  x2onnx mxnet det1-symbol.json det1-0001.params --input-shape data:1,3,48,48 --input data=face.jpg --channel-order BGR --mean 127.5 --std 128
  x2onnx mxnet net-symbol.json net-0000.params --input-shape data:1,3,224,224 \\
         --input-shape mask:1,224,224 --input-dtype mask:int64 --no-simplify
  x2onnx mxnet models/det2 models/det3 --epoch 1 -j 2 -o onnx/

exit codes: 0 ok, 1 internal error, 2 bad input, 3 unsupported op or outputs differ from MXNet
  (several models: the most serious failure among them: 1 before 3 before 2)
"""


def _add_mxnet_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mxnet",
        help="export an MXNet symbol + params to ONNX",
        description="Export an MXNet 1.x model (symbol JSON + .params) to ONNX, simplify it and check "
                    "it against MXNet on seeded random inputs (or on your own data: --input).",
        allow_abbrev=False,
        epilog=_MXNET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", metavar="INPUT", nargs="+",
                   help="SYMBOL.json PARAMS (e.g. det1-symbol.json det1-0001.params), or with --epoch a "
                        "checkpoint PREFIX (e.g. det1). Several models: several PREFIXes with --epoch "
                        "(e.g. det1 det2 --epoch 1), or several SYMBOL.json PARAMS pairs")
    p.add_argument("--epoch", type=int, metavar="N",
                   help="checkpoint epoch: read PREFIX-symbol.json and PREFIX-%%04d.params for each PREFIX "
                        "(e.g. det1 --epoch 1 reads det1-symbol.json and det1-0001.params)")
    p.add_argument("-o", "--output", metavar="OUT.onnx",
                   help="where to write the model (default: the symbol's name without -symbol.json plus .onnx, "
                        "in the current folder; e.g. det1-symbol.json -> ./det1.onnx). Written only on success; "
                        "models over 2 GB get their weights in OUT.onnx.data beside it. A folder (ending in "
                        "'/', or one that exists) receives NAME.onnx, e.g. -o onnx/; with several models -o "
                        "must be a folder")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME:DIMS",
                   help="shape of an input, repeatable (e.g. --input-shape data:1,3,224,224); inputs not named "
                        "take the shape the symbol declares. With several models it applies to each of them")
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
    add_input_flags(p)
    add_tolerance_flags(p)
    p.add_argument("--verify-json", metavar="PATH",
                   help="also write the verification's figures as JSON (per output: error relative to the "
                        "output's scale, elements out of tolerance; the reference's sensitivity; the located "
                        "node), also when verification fails; e.g. --verify-json det1.verify.json")
    add_jobs_flag(p, "x2onnx mxnet det1 det2 det3 --epoch 1 -j 2 -o onnx/")
    add_common_flags(p)
    p.set_defaults(handler=_run_mxnet)


def _add_info_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "info",
        help="print a summary of an MXNet symbol (inputs, outputs, ops, parameters)",
        allow_abbrev=False,
        description="Print what an export needs to know about an MXNet model, from its files alone (MXNet "
                    "is not run): inputs with declared or given shapes, outputs, op histogram, parameter "
                    "count (from PARAMS, or the .params file found beside the symbol), and ops with no "
                    "ONNX translation.",
        epilog="examples:\n  x2onnx info det1-symbol.json\n  x2onnx info det1-symbol.json det1-0001.params --json\n"
               "  x2onnx info resnet-symbol.json --input-shape data:1,3,224,224",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("symbol", metavar="SYMBOL.json", help="the MXNet symbol file, e.g. det1-symbol.json")
    q.add_argument("params", metavar="PARAMS", nargs="?",
                   help="the parameters file for the parameter count (default: found beside the symbol)")
    q.add_argument("--input-shape", action="append", default=[], metavar="NAME:DIMS",
                   help="shape of an input to show, repeatable (e.g. --input-shape data:1,3,12,12)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_common_flags(q)
    q.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    """``common.summary``'s view of the symbol, plus the ops the exporter cannot translate."""
    import json

    from common.summary import format_summary, mxnet_summary

    summary = mxnet_summary(args.symbol, args.params, parse_shapes(args.input_shape) or None)
    missing = _untranslated_ops(summary.op_histogram)
    if args.json:
        data = summary.to_dict()
        data["untranslated_ops"] = missing
        print(json.dumps(data, indent=2))
        return 0
    print(format_summary(summary))
    if missing is not None:
        print("ONNX export: " + ("every op has a translation" if not missing
                                 else "no translation for " + ", ".join(missing)))
    return 0


def _untranslated_ops(op_histogram: dict) -> Optional[list[str]]:
    """Ops of the symbol with no translation at the default opset; None when MXNet is not installed."""
    try:
        import mx2onnx_patches
        from mx2onnx_patches.mxnet_import import import_mxnet

        import_mxnet()
        from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    except ConversionError:
        return None
    with mx2onnx_patches.apply():
        known = {op for table in MXNetGraph.registry_.values() for op in table}
    return sorted(op for op in op_histogram if op not in known and op != "null")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="x2onnx",
        allow_abbrev=False,
        description="Export models of other frameworks to ONNX (today: MXNet 1.x), simplified and checked "
                    "against the original framework.",
        epilog="commands:\n  mxnet   x2onnx mxnet det1-symbol.json det1-0001.params --input-shape data:1,3,12,12\n"
               "  info    x2onnx info det1-symbol.json\n\n"
               "Run 'x2onnx mxnet --help' for every option with examples.\n"
               "exit codes: 0 ok, 1 internal error, 2 bad input, 3 unsupported op or outputs differ",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_mxnet_parser(sub)
    _add_info_parser(sub)
    return parser


def default_output(symbol_path: str) -> Path:
    name = Path(symbol_path).name
    for suffix in ("-symbol.json", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name + ".onnx")


def _mxnet_pairs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(label, symbol path, params path) per model named on the command line."""
    from x2onnx.mxnet import loading

    inputs = [str(i) for i in args.inputs]
    if args.epoch is not None:
        if any(i.endswith(".params") for i in inputs):
            raise ModelLoadError("give either SYMBOL.json PARAMS or PREFIX --epoch N, not both")
        return [(prefix, *(str(p) for p in loading.checkpoint_paths(prefix, args.epoch))) for prefix in inputs]
    if len(inputs) == 1:
        raise ModelLoadError("missing PARAMS: give SYMBOL.json PARAMS, or PREFIX --epoch N", file=inputs[0])
    if len(inputs) == 2:
        return [(inputs[0], inputs[0], inputs[1])]
    return _pairs_by_extension(inputs)


def _pairs_by_extension(inputs: list[str]) -> list[tuple[str, str, str]]:
    """``a-symbol.json a.params b-symbol.json b.params``: each .json is followed by its PARAMS."""
    usage = ("give SYMBOL.json PARAMS pairs (a-symbol.json a-0000.params b-symbol.json b-0000.params) "
             "or checkpoint prefixes with --epoch N (a b --epoch 0)")
    if not any(i.endswith(".json") for i in inputs):
        raise ModelLoadError(f"{len(inputs)} inputs and none is a .json symbol file: forgot --epoch N? {usage}")
    pairs = []
    for at in range(0, len(inputs), 2):
        symbol = inputs[at]
        params = inputs[at + 1] if at + 1 < len(inputs) else None
        if not symbol.endswith(".json"):
            raise ModelLoadError(f"expected a SYMBOL.json here, got {symbol!r}; {usage}")
        if params is None or params.endswith(".json"):
            raise ModelLoadError(f"missing the PARAMS of {symbol}; {usage}")
        pairs.append((symbol, symbol, params))
    return pairs


def _run_mxnet(args: argparse.Namespace) -> int:
    """One model: export it here, as always. Several: one worker process per ``-j``."""
    pairs = _mxnet_pairs(args)
    parse_shapes(args.input_shape)  # bad options fail once, before any work
    parse_dtypes(args.input_dtype)
    check_tolerances(args)
    if args.input and args.no_verify:
        raise ShapeError("--input feeds the check against MXNet, which --no-verify turns off")
    several = len(pairs) > 1
    if args.output and several and not names_a_folder(args.output):
        raise ConversionError(f"-o {args.output}: with {len(pairs)} models -o must be a folder (end it with '/', "
                              f"e.g. -o onnx/), or leave -o out to write NAME.onnx into the current folder")
    jobs = []
    for label, symbol_path, params_path in pairs:
        output = args.output
        if output is None:
            output = str(default_output(symbol_path))
        elif names_a_folder(output):
            output = str(Path(output) / default_output(symbol_path))
        job_args = argparse.Namespace(**{**vars(args), "symbol": symbol_path, "params": params_path,
                                         "output": output})
        jobs.append(Job(label=label, output=output, args=job_args))
    if not several:
        with Progress(f"x2onnx {Path(jobs[0].label).name}", enabled=wants_progress(args.quiet)):
            return export_mxnet(jobs[0].args)
    refuse_clashes([(job.label, [job.output]) for job in jobs])
    return run_jobs(export_mxnet, jobs, workers=args.jobs, quiet=args.quiet, verbose=args.verbose or args.debug,
                    title="x2onnx")


def export_mxnet(args: argparse.Namespace) -> int:
    """Export the one model ``args.symbol`` + ``args.params`` to ``args.output`` (what a batch
    worker runs for each model)."""
    from x2onnx.mxnet.export import export_report
    from x2onnx.mxnet.writer import save_model

    shapes = parse_shapes(args.input_shape)
    dtypes = parse_dtypes(args.input_dtype)
    output = Path(args.output)
    with verify_json(getattr(args, "verify_json", None)) as record:
        done = export_report(args.symbol, args.params, shapes or None, opset=args.opset,
                             dynamic_batch=args.dynamic_batch, simplify=not args.no_simplify,
                             verify=not args.no_verify, input_dtypes=dtypes or None, seed=args.seed,
                             atol=args.atol, rtol=args.rtol, input_files=args.input, image=image_options(args))
        record(done.report)
    progress.stage("write")
    save_model(done.model, output)
    progress.done()
    if not args.quiet:
        graph = done.model.graph
        inputs = ", ".join(f"{n}:{','.join(map(str, s))}" for n, s in done.inputs.shapes.items())
        print(f"wrote {output} (opset {args.opset}, {len(graph.node)} nodes; inputs {inputs}; "
              f"outputs {', '.join(o.name for o in graph.output)})")
        if done.labels:
            print(f"training-only inputs left out: {', '.join(done.labels)}")
        if done.report is not None:
            for line in done.report.lines():
                print(f"verified {line}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return cli_main(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
