"""``onnx2x``: convert ONNX models to PyTorch source + weights, checked against onnxruntime.

Several models in one command run in worker processes (``-j N``, :mod:`common.batch`).

Exit codes: 0 done, 1 internal error (a bug: rerun with --debug and report it), 2 bad input
(unreadable model, bad --input-shape), 3 unsupported op or outputs that differ from onnxruntime.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

from common import progress
from common.batch import Job, add_jobs_flag, names_a_folder, refuse_clashes, run_jobs
from common.cli import add_common_flags, cli_main, parse_shapes
from common.errors import ConversionError, ShapeError
from common.progress import Progress, wants_progress
from common.verify.options import add_input_flags, add_tolerance_flags, check_tolerances, image_options, verify_json

log = logging.getLogger("onnx2x")

_TORCH_EXAMPLES = """\
output files (for -o out/resnet.pt):
  out/resnet.pt   the weights: a state_dict, read with torch.load(path, weights_only=True)
  out/resnet.py   the network as plain PyTorch source; needs only torch, not onnx2x:
                    import sys; sys.path.insert(0, "out")
                    from resnet import load
                    net = load()          # reads out/resnet.pt beside it
  Both files appear together or not at all.

several models at once:
  Give several MODEL.onnx; -j N converts N of them at the same time, each in its own worker
  process. Outputs go beside each model, or into the folder -o names (end it with '/': -o out/).
  A model that fails (or crashes its worker) writes nothing and costs only itself; the others are
  converted as if run alone, to the same bytes. One line per model: 'ok MODEL -> OUT.pt' or
  'error: ...', then a count. --input-shape and --input apply to every model: for models whose
  inputs differ, run one command per model.

progress:
  On a terminal, a status line on stderr shows the stage of a conversion (load, simplify,
  convert, write, verify) or how many models of a batch are done. Nothing is shown with -q or
  when stderr is not a terminal (a pipe, a log file).

examples:
  onnx2x torch resnet50.onnx -o resnet50.pt
  onnx2x torch bert.onnx --input-shape input_ids:1,128 --input-shape attention_mask:1,128
  onnx2x torch model.onnx --no-simplify --no-verify -o out/model.pt
  onnx2x torch model.onnx --simplify-path model.sim.onnx --debug
  onnx2x torch model.onnx --input batch.npz   (check on your own data, not random inputs)
  onnx2x torch model.onnx --trainable -o finetune/model.pt   (then net.train(): fine-tune it)
  onnx2x torch a.onnx b.onnx c.onnx -j 2 -o converted/

exit codes: 0 ok, 1 internal error, 2 bad input, 3 unsupported op or outputs differ
  (several models: the most serious failure among them: 1 before 3 before 2)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnx2x",
        allow_abbrev=False,
        description="Convert ONNX models to other frameworks (today: PyTorch).",
        epilog="Run 'onnx2x torch --help' for the options of a conversion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "torch",
        help="convert an ONNX model to a PyTorch module (source + weights)",
        description="Convert an ONNX model to a PyTorch nn.Module written as plain source plus a "
                    "weights file, then check it against onnxruntime on seeded random inputs (or on "
                    "your own data: --input).",
        allow_abbrev=False,
        epilog=_TORCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.onnx", nargs="+",
                   help="the ONNX model(s) to convert (external data is read from each model's folder). "
                        "Example: resnet.onnx, or several: a.onnx b.onnx")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="weights path; the source is written beside it with the suffix .py "
                        "(default: MODEL.pt next to MODEL.onnx). Example: -o out/net.pt writes "
                        "out/net.pt and out/net.py. A folder (ending in '/', or one that exists) "
                        "receives MODEL.pt and MODEL.py: -o out/; with several models -o must be a folder")
    p.add_argument("--input-shape", action="append", metavar="NAME:DIMS", default=[],
                   help="fix the shape of input NAME, repeatable; symbolic dimensions you do not fix "
                        "stay dynamic in the module; with several models it applies to each of them. "
                        "Example: --input-shape data:1,3,224,224")
    p.add_argument("--no-simplify", action="store_true",
                   help="convert the model as it is, without running onnx-simplifier first "
                        "(simplifying folds constants and removes dead code; it is skipped with a "
                        "warning whenever it fails, and silently on graphs it would not change)")
    p.add_argument("--trainable", action="store_true",
                   help="convert for fine-tuning instead of fast inference: every float initializer is a "
                        "parameter that requires grad and none is folded or fused; BatchNormalization "
                        "keeps its running mean/variance as buffers that update in train() (ONNX momentum "
                        "m is PyTorch's 1-m) and normalize in eval(); Dropout drops in train() only. "
                        "The module loads in eval() mode: call .train() to train it")
    p.add_argument("--simplify-path", metavar="P",
                   help="also save the ONNX model that was actually converted (simplified, shapes "
                        "inferred) to P, to inspect it. Example: --simplify-path model.sim.onnx. With "
                        "several models P must be a folder; each goes there as MODEL.sim.onnx: "
                        "--simplify-path sim/")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the check against onnxruntime (by default the saved module and "
                        "onnxruntime run on the same seeded random inputs; a mismatch writes "
                        "nothing and exits 3; a model onnxruntime cannot load is converted with a "
                        "warning)")
    add_tolerance_flags(p)
    p.add_argument("--verify-json", metavar="PATH",
                   help="also write the check's figures as JSON (per output: error relative to the output's "
                        "scale, elements out of tolerance; onnxruntime's sensitivity; the located node), also "
                        "when the check fails. Example: --verify-json resnet.verify.json")
    add_input_flags(p)
    add_jobs_flag(p, "onnx2x torch a.onnx b.onnx c.onnx -j 2 -o out/")
    add_common_flags(p)
    p.set_defaults(handler=cmd_torch)

    q = sub.add_parser(
        "info",
        help="print a summary of an ONNX model (inputs, outputs, opsets, ops)",
        allow_abbrev=False,
        description="Print what a conversion needs to know about an ONNX model: inputs and "
                    "outputs with shapes, opsets, op counts, and ops without a PyTorch converter.",
        epilog="examples:\n  onnx2x info resnet50.onnx\n  onnx2x info resnet50.onnx --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to describe")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_common_flags(q)
    q.set_defaults(handler=cmd_info)
    return parser


def default_output(model_path: str) -> Path:
    p = Path(model_path)
    return p.with_suffix(".pt") if p.suffix else p.with_name(p.name + ".pt")


def _torch_job(args: argparse.Namespace, model: str, several: bool) -> Job:
    """The arguments of one model's conversion: ``-o``/``--simplify-path`` folders resolved."""
    output = args.output
    if output and names_a_folder(output):
        output = str(Path(output) / default_output(model).name)
    elif output and several:
        raise ConversionError(f"-o {output}: with {len(args.model)} models -o must be a folder (end it with "
                              f"'/', e.g. -o out/), or leave -o out to write each model beside its input")
    simplified = args.simplify_path
    if simplified and names_a_folder(simplified):
        simplified = str(Path(simplified) / Path(model).with_suffix(".sim.onnx").name)
    elif simplified and several:
        raise ConversionError(f"--simplify-path {simplified}: with {len(args.model)} models it must be a "
                              f"folder (end it with '/', e.g. --simplify-path sim/)")
    job_args = argparse.Namespace(**{**vars(args), "model": model, "output": output, "simplify_path": simplified})
    weights, _ = _torch_outputs(job_args)
    return Job(label=model, output=str(weights), args=job_args)


def _torch_outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    from .torch import artifact

    return artifact.artifact_paths(args.output or default_output(args.model))


def cmd_torch(args: argparse.Namespace) -> int:
    """One model: convert it here, as always. Several: one worker process per ``-j``."""
    parse_shapes(args.input_shape)  # a bad --input-shape fails once, before any work
    check_tolerances(args)
    if args.input and args.no_verify:
        raise ShapeError("--input feeds the check against onnxruntime, which --no-verify turns off")
    several = len(args.model) > 1
    jobs = [_torch_job(args, model, several) for model in args.model]
    if not several:
        with Progress(f"onnx2x {Path(jobs[0].label).name}", enabled=wants_progress(args.quiet)):
            return convert_torch(jobs[0].args)
    refuse_clashes([(job.label, [*_torch_outputs(job.args)] + ([job.args.simplify_path]
                                                              if job.args.simplify_path else []))
                    for job in jobs])
    return run_jobs(convert_torch, jobs, workers=args.jobs, quiet=args.quiet, verbose=args.verbose or args.debug,
                    title="onnx2x")


def convert_torch(args: argparse.Namespace) -> int:
    """Convert the one model ``args.model`` (what a batch worker runs for each model).

    The weights are read once, from the file straight into the module's tensors (the ONNX
    model is held as a skeleton: :mod:`common.weight_refs`); the module is written, then let go,
    and the check runs the written files (weights memory-mapped) against onnxruntime, so that
    at no point two copies of the weights are held by this process's own code. For models with
    small weights, onnxruntime's side of the check runs on another core during the conversion
    (:mod:`onnx2x.torch.early_reference`: its copy of the weights then overlaps ours).
    """
    from common.gc_pause import gc_paused

    with gc_paused():  # see common/gc_pause.py
        return _convert_torch(args)


def _convert_torch(args: argparse.Namespace) -> int:
    from common.atomic import atomic_files
    from common.model_io import load_onnx

    from .torch import artifact
    from .torch.convert import _fix_input_shapes, convert_prepared, prepare
    from .torch.early_reference import early_reference
    from .torch.verify import given_inputs

    shapes = parse_shapes(args.input_shape)
    label = str(args.model)
    progress.stage("load")
    original = load_onnx(args.model, lazy=True)
    reference = None
    given = None
    if not args.no_verify:
        reference = _fix_input_shapes(original, shapes, label) if shapes else original
        if args.input:  # read and checked before the conversion: a wrong file costs nothing
            try:
                given = given_inputs(reference, args.input, shapes, image_options(args))
            except ConversionError as exc:
                raise exc.with_context(file=label)
    with early_reference(reference, input_shapes=shapes, seed=args.seed, given=given, where=label) as early:
        progress.stage("prepare" if args.no_simplify else "simplify")
        trainable = bool(getattr(args, "trainable", False))
        proto, _ = prepare(original, simplify=not args.no_simplify, input_shapes=shapes or None, trainable=trainable)
        del original
        progress.stage("convert")
        gm = convert_prepared(proto, label, trainable=trainable, generate_code=False)  # written, never run
        if args.simplify_path:
            _save_materialized(proto, args.simplify_path)
            log.info("wrote the converted ONNX model to %s", args.simplify_path)
        weights, source = artifact.artifact_paths(args.output or default_output(args.model))
        artifact.warn_if_shadowing(source)
        verdict = "not verified (--no-verify)"
        with atomic_files([weights, source]) as (w_tmp, s_tmp):
            progress.stage("write")
            artifact.write(gm, w_tmp, s_tmp, source_label=Path(label).name)
            if reference is not None:
                _drop_tensors(gm)  # written: the check reads the files, and the weights are held once
            del gm
            if reference is not None:
                progress.stage("verify")
                verdict = _verify_written(args, s_tmp, reference, proto, shapes, label, given,
                                          _early_outputs(early))
    progress.done()
    if not args.quiet:
        print(f"wrote {weights} and {source}; {verdict}")
    return 0


def _early_outputs(early):
    """onnxruntime's outputs from the early reference; None (the check computes them again, the
    usual way) when there is none or it could not give them, so that a failure of that path alone
    never costs the check."""
    if early is None:
        return None
    try:
        reference = early.result()
    except Exception as exc:  # noqa: BLE001 - the usual way reports what is really wrong
        log.debug("early reference failed (%s: %s); computed again", type(exc).__name__, exc)
        return None
    return reference if reference.expected is not None else None


def _drop_tensors(gm) -> None:
    """Let go of every tensor of ``gm`` now (an fx GraphModule and its graph reference each
    other: without this its weights would live on until the garbage collector runs)."""
    import torch

    for module in gm.modules():
        module._parameters.clear()
        module._buffers.clear()
        for name in [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]:
            delattr(module, name)


def _save_materialized(proto, path: str) -> None:
    """Save a (lazily loaded) model with its weights in it: ``--simplify-path``."""
    import onnx

    from common.model_io import save_onnx
    from common.weight_refs import is_lazy, materialize

    if is_lazy(proto):
        whole = onnx.ModelProto()
        whole.CopyFrom(proto)
        proto = materialize(whole)
    save_onnx(proto, path)


def _verify_written(args: argparse.Namespace, source: Path, reference, proto, shapes, label: str,
                    given=None, outputs=None) -> str:
    """Check the written module (weights memory-mapped) against onnxruntime on ``reference``
    (``outputs``: onnxruntime's, when they were computed during the conversion).

    When the outputs differ, the locator converts ``proto`` (the graph the module was built from)
    once more, with and without fusions, to compare node by node: that costs only on failure.
    """
    from .torch import artifact
    from .torch.convert import convert_prepared
    from .torch.verify import check_module

    trainable = bool(getattr(args, "trainable", False))
    saved = artifact.load(source, mmap=True)  # check what the user gets: the written files
    with _reference_for_onnxruntime(reference, proto) as (for_ort, proto_for_ort):
        with verify_json(getattr(args, "verify_json", None)) as record:
            result = check_module(saved, for_ort, input_shapes=shapes, seed=args.seed, given=given, rtol=args.rtol,
                                  atol=args.atol, label=label,
                                  debug_gm=lambda: convert_prepared(proto, label, trainable=trainable),
                                  debug_proto=proto_for_ort,
                                  unfused=lambda: convert_prepared(proto, label, fuse=False, trainable=trainable),
                                  reference=outputs)
            record(result.verdict)
    if result.skipped:
        return f"verification skipped: {result.reason}"
    if result.verdict.overruled:
        return f"differs from onnxruntime, accepted: {result.verdict.accepted_because} (see warning)"
    return "matches onnxruntime (" + "; ".join(result.verdict.lines()) + ")"


@contextlib.contextmanager
def _reference_for_onnxruntime(*models) -> Iterator[tuple]:
    """The lazily loaded ``models`` in a form onnxruntime reads without a copy of the weights.

    onnxruntime reads the external data of a model given as bytes relative to the working
    directory, never above it: the check runs with the working directory set to the folder of
    the weights (restored after), which it then memory-maps. Without that folder (no
    permission), the weights are read into the models for the check.
    """
    import os

    import onnx

    from common.weight_refs import data_folder, materialize, relative_to

    folders = {data_folder(m) for m in models} - {None}
    folder = os.path.commonpath(sorted(folders)) if folders else None
    if folder is None:
        yield models
        return
    relative = tuple(relative_to(m, folder) for m in models)
    previous = os.getcwd()
    try:
        if any(r is None for r in relative):
            raise OSError("references outside their folder")
        os.chdir(folder)
    except OSError:
        whole = []
        for m in models:
            copy = onnx.ModelProto()
            copy.CopyFrom(m)
            whole.append(materialize(copy))
        yield tuple(whole)
        return
    try:
        yield relative
    finally:
        os.chdir(previous)


def cmd_info(args: argparse.Namespace) -> int:
    """``common.summary``'s view of the model, plus the ops this converter cannot handle."""
    import json

    from common.summary import format_summary, onnx_summary

    summary = onnx_summary(args.model)
    missing = unsupported_ops(summary.opsets, summary.op_histogram)
    if args.json:
        data = summary.to_dict()
        data["unsupported_ops"] = missing
        print(json.dumps(data, indent=2))
        return 0
    print(format_summary(summary))
    print("PyTorch converter: " + ("every op supported" if not missing else "no converter for " + ", ".join(missing)))
    return 0


def unsupported_ops(opsets: dict[str, int], op_histogram: dict[str, int]) -> list[str]:
    """Op names of ``op_histogram`` (``op`` or ``domain::op``) that no converter handles at these opsets."""
    from common.errors import UnsupportedOpError

    from .torch import registry

    missing = []
    for key in op_histogram:
        if key.startswith("(function "):
            key = key.split(") ", 1)[1]
        domain, _, op = key.rpartition("::")
        try:
            registry.lookup(op, opsets.get(domain or "ai.onnx", 1), domain=domain)
        except UnsupportedOpError:
            missing.append(key)
    return sorted(set(missing))


def main(argv: Optional[Sequence[str]] = None) -> int:
    return cli_main(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
