"""A corpus of real GluonCV architectures, exported by MXNet and converted by the x2onnx CLI as a user would.

Each model is built in its own subprocess (``python -m tests.support.gluon_corpus build NAME FOLDER``):
GluonCV refuses to import next to torch >= 2.0, so torch is hidden there, and its model store imports
``portalocker`` (download locking only; no download happens here: ``pretrained=False``,
``pretrained_base=False``), which is stubbed. The exported ``NAME-symbol.json`` + ``NAME-0000.params``
then go through ``python -m x2onnx.cli mxnet ... --verify-json`` in a second subprocess with the CLI's
default flags (simplify, verify against MXNet's plain executor), so a crash in one model costs only
that model.

Weights follow :mod:`tests.support.zoo_models`' recipe, seeded: He-initialised convolutions and dense
layers, BatchNorm gamma ~ U(0.5, 1.5) and beta ~ N(0.5, 0.3), residual branches ending scaled by
U(0, 0.1), BatchNorm running statistics measured on a calibration batch, and (classifiers) logits
rescaled to a standard deviation of 2. Detection networks cannot run a training-mode pass without
targets (YOLOv3 asks for them), so statistics are measured in inference mode instead: a forward
pre-hook on every BatchNorm sets its running statistics to the batch statistics of its own input,
layer after layer in one pass, which is what a training-mode pass would measure. BatchNorm nodes
inside SymbolBlocks (SSD's feature extractors) are calibrated the same way on their graph, and
networks without BatchNorm (SSD-VGG16) get each convolution scaled to unit output RMS instead: left
alone, they output scores of exactly 1 and boxes of 1e14, a chaotic reference against which
verification can check nothing.
"""
from __future__ import annotations

import argparse
import importlib.abc
import json
import logging
import os
import re
import subprocess
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from tests.support.zoo_models import _batchnorms, _walk

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SEED = 0


@dataclass(frozen=True)
class CorpusModel:
    """One GluonCV model of the corpus: its zoo name, task, input shape and what it needs."""

    name: str
    task: str
    shape: tuple[int, ...]
    opset: Optional[int] = None  # None: the CLI's default
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra get_model arguments
    timeout_s: int = 600
    calibration_images: int = 2  # detection/segmentation/pose: images in the BatchNorm calibration batch
    unit_convolutions: bool = False  # no BatchNorm (VGG): scale each convolution to unit output RMS instead

    @property
    def shape_text(self) -> str:
        return ",".join(str(d) for d in self.shape)


CORPUS = [
    CorpusModel("resnet18_v1b", "classification", (1, 3, 224, 224)),
    CorpusModel("resnet50_v1d", "classification", (1, 3, 224, 224)),
    CorpusModel("mobilenetv3_small", "classification", (1, 3, 224, 224)),
    CorpusModel("mobilenetv3_large", "classification", (1, 3, 224, 224)),
    CorpusModel("se_resnext50_32x4d", "classification", (1, 3, 224, 224)),
    CorpusModel("resnest14", "classification", (1, 3, 224, 224)),
    CorpusModel("darknet53", "classification", (1, 3, 224, 224)),
    CorpusModel("xception", "classification", (1, 3, 299, 299)),
    CorpusModel("hrnet_w18_small_v1_c", "classification", (1, 3, 224, 224)),
    # SSD's last feature maps are 1x1: enough images that each BatchNorm channel there sees 16 samples
    CorpusModel("ssd_512_mobilenet1.0_voc", "detection", (1, 3, 256, 256), calibration_images=16),
    CorpusModel("ssd_300_resnet34_v1b_voc", "detection", (1, 3, 300, 300), calibration_images=16),
    CorpusModel("ssd_300_vgg16_atrous_voc", "detection", (1, 3, 300, 300), calibration_images=16,
                unit_convolutions=True),
    CorpusModel("yolo3_mobilenet1.0_voc", "detection", (1, 3, 256, 256)),
    CorpusModel("yolo3_darknet53_voc", "detection", (1, 3, 256, 256)),
    CorpusModel("center_net_resnet18_v1b_voc", "detection", (1, 3, 256, 256)),
    # deformable convolution: ONNX has DeformConv from opset 19
    CorpusModel("center_net_resnet18_v1b_dcnv2_voc", "detection", (1, 3, 256, 256), opset=19),
    CorpusModel("faster_rcnn_resnet50_v1b_voc", "detection", (1, 3, 320, 320), calibration_images=1),  # batch 1 only
    CorpusModel("mask_rcnn_resnet18_v1b_coco", "instance segmentation", (1, 3, 320, 320), calibration_images=1),
    CorpusModel("fcn_resnet50_voc", "segmentation", (1, 3, 240, 240)),
    CorpusModel("psp_resnet50_ade", "segmentation", (1, 3, 240, 240), kwargs={"crop_size": 240}),
    CorpusModel("fastscnn_citys", "segmentation", (1, 3, 256, 256), kwargs={"height": 256, "width": 256}),
    CorpusModel("icnet_resnet50_citys", "segmentation", (1, 3, 256, 256), kwargs={"height": 256, "width": 256}),
    CorpusModel("deeplab_resnet50_ade", "segmentation", (1, 3, 240, 240), kwargs={"height": 240, "width": 240}),
    CorpusModel("simple_pose_resnet18_v1b", "pose", (1, 3, 256, 192)),
    CorpusModel("mobile_pose_mobilenetv2_1.0", "pose", (1, 3, 256, 192)),
]
BY_NAME = {m.name: m for m in CORPUS}
DENSE_TASKS = ("classification", "segmentation", "pose")  # outputs without NMS: element-wise comparison


# --- building (runs in the subprocess with torch hidden) -----------------------------------------

class _HiddenTorch(importlib.abc.MetaPathFinder):
    """Makes ``import torch`` fail. Why not ``sys.modules["torch"] = None``: libraries that look
    for torch tensors by reading ``sys.modules["torch"].Tensor`` (SciPy's array API helpers, which
    GluonCV reaches through scikit-learn) then fail on None instead of finding no torch."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is hidden while GluonCV builds models (it refuses torch >= 2.0)")
        return None


def import_gluoncv() -> Any:
    """``gluoncv`` with MXNet imported through the project's patches, torch hidden, portalocker stubbed."""
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _HiddenTorch())
    sys.modules.setdefault("portalocker", types.ModuleType("portalocker"))  # download locking only
    from tests.support.zoo_models import _mx

    _mx()
    import gluoncv

    return gluoncv


def _branch_ends(net: Any) -> Iterator[Any]:
    """The layer each residual branch ends with, in the zoo's and GluonCV's block types (by class
    name and attributes: GluonCV reuses names such as ``LinearBottleneck`` for other layouts)."""
    for block in _walk(net):
        kind = type(block).__name__
        if kind in ("BasicBlockV1", "BottleneckV1") and hasattr(block, "body"):
            yield block.body[len(block.body) - 1]
        elif kind in ("BasicBlockV2", "BottleneckV2") and hasattr(block, "conv2"):
            yield getattr(block, "conv3", None) or block.conv2
        elif kind == "LinearBottleneck" and getattr(block, "use_shortcut", False) and hasattr(block, "out"):
            yield block.out[len(block.out) - 1]
        elif kind == "BasicBlockV1b":
            yield block.bn2
        elif kind in ("BottleneckV1b", "Bottleneck") and hasattr(block, "bn3"):  # ResNet v1b, ResNeSt
            yield block.bn3


def _batch_statistics(x: Any, axis: int) -> tuple[Any, Any]:
    """Per-channel mean and (population) variance of ``x`` over every axis but ``axis``."""
    axis %= x.ndim
    axes = tuple(a for a in range(x.ndim) if a != axis)
    mean = x.mean(axis=axes)
    shape = [1] * x.ndim
    shape[axis] = -1
    return mean, ((x - mean.reshape(shape)) ** 2).mean(axis=axes) + 1e-6


def _calibrate_symbol_block(block: Any, x: Any, rng: np.random.Generator) -> int:
    """The BatchNorm nodes inside a SymbolBlock (GluonCV's SSD feature extractors are built from a
    backbone's symbol), which no block hook reaches: gamma/beta drawn as for the others, then each
    node's statistics measured on its input, in graph order, by running the graph up to it."""
    from tests.support.zoo_models import BETA, GAMMA

    mx = sys.modules["mxnet"]
    inputs, out = block._cached_graph
    params = {p.name: p for p in block.collect_params().values()}
    internals = out.get_internals()
    nodes = json.loads(out.tojson())["nodes"]
    done = 0
    for node in nodes:
        if node["op"] != "BatchNorm":
            continue
        src, index = node["inputs"][0][:2]
        producer = nodes[src]
        gamma, beta, mean, var = (params[nodes[i[0]]["name"]] for i in node["inputs"][1:5])
        outputs = internals.list_outputs()
        name = f"{producer['name']}_output" if producer["op"] == "null" or f"{producer['name']}_output" in outputs \
            else f"{producer['name']}_output{index}"
        prefix = internals[name] if producer["op"] != "null" else None
        if prefix is None:
            feed = x
        else:
            args = {n: (x if n == inputs[0].name else params[n].data()) for n in prefix.list_arguments()}
            aux = {n: params[n].data() for n in prefix.list_auxiliary_states()}
            ex = prefix.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
            feed = ex.forward(is_train=False)[0]
        if gamma.grad_req != "null" and node.get("attrs", {}).get("fix_gamma", "True") in ("False", "false", "0"):
            gamma.set_data(mx.nd.array(rng.uniform(*GAMMA, size=gamma.shape)))
        beta.set_data(mx.nd.array(rng.normal(*BETA, size=beta.shape)))
        m, v = _batch_statistics(feed, int(node.get("attrs", {}).get("axis", 1)))
        mean.set_data(m)
        var.set_data(v)
        done += 1
    return done


def calibrate_in_inference(net: Any, batch: Any, rng: np.random.Generator, *, unit_convolutions: bool = False) -> None:
    """Set every BatchNorm's running statistics to the batch statistics of its input on ``batch``,
    in inference mode (see the module docstring). Networks without BatchNorm (VGG) would grow by
    a factor per layer; with ``unit_convolutions`` each convolution is scaled, in the same pass, to
    an output RMS of 1 on its input (data-dependent initialisation). ``net`` must not be hybridized
    yet, or the hooks would not run."""
    mx = sys.modules["mxnet"]
    from mxnet.gluon import SymbolBlock

    def hook(bn: Any, inputs: Sequence[Any]) -> None:
        mean, var = _batch_statistics(inputs[0], bn._kwargs.get("axis", 1))
        bn.running_mean.set_data(mean)
        bn.running_var.set_data(var)

    def symbol_hook(block: Any, inputs: Sequence[Any]) -> None:
        log.info("%s: %d BatchNorm nodes calibrated", block.name, _calibrate_symbol_block(block, inputs[0], rng))

    def conv_hook(conv: Any, inputs: Sequence[Any]) -> None:
        bias = conv.bias.data() if conv.bias is not None else None
        kwargs = dict(conv._kwargs, no_bias=bias is None)
        out = mx.nd.Convolution(inputs[0], conv.weight.data(), bias, **kwargs)
        factor = 1.0 / max(float((out ** 2).mean().sqrt().asscalar()), 1e-12)
        conv.weight.set_data(conv.weight.data() * factor)
        if bias is not None:
            conv.bias.set_data(bias * factor)

    handles = [bn.register_forward_pre_hook(hook) for bn in _batchnorms(net)]
    if unit_convolutions:
        from mxnet.gluon import nn

        handles += [b.register_forward_pre_hook(conv_hook) for b in _walk(net) if isinstance(b, nn.Conv2D)]
    handles += [b.register_forward_pre_hook(symbol_hook) for b in _walk(net) if isinstance(b, SymbolBlock)]
    try:
        net(batch)
        mx.nd.waitall()
    finally:
        for h in handles:
            h.detach()


def he_initialise(net: Any, rng: np.random.Generator) -> None:
    """Every convolution and dense weight ~ N(0, 2 / fan_in) (He), biases zero. Done by hand rather
    than by ``initialize(Xavier)``: some GluonCV heads initialise parts of themselves at
    construction, and re-initialising those with Xavier fails on their vectors."""
    mx = sys.modules["mxnet"]
    for param in net.collect_params().values():
        shape = param.shape
        if param.name.endswith("weight") and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            param.set_data(mx.nd.array(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)))
        elif param.name.endswith("bias"):
            param.set_data(mx.nd.zeros(shape))


def _last_weighted(net: Any) -> Any:
    return [b for b in _walk(net) if getattr(b, "weight", None) is not None][-1]


def build_network(model: CorpusModel, seed: int = SEED) -> Any:
    """The GluonCV network with the weights the module docstring describes, hybridized and run once."""
    gluoncv = import_gluoncv()
    mx = sys.modules["mxnet"]
    from tests.support.zoo_models import LOGIT_STD, calibration_batch, randomize_affine

    mx.random.seed(seed)
    # classifiers have no pretrained base (DarknetV3 even raises on unknown arguments)
    base = {} if model.task == "classification" else {"pretrained_base": False}
    net = gluoncv.model_zoo.get_model(model.name, pretrained=False, **base, **model.kwargs)
    net.initialize()
    net(mx.nd.zeros(model.shape))  # deferred shapes
    rng = np.random.default_rng(seed)
    he_initialise(net, rng)
    randomize_affine(net, rng, _branch_ends(net))
    if model.task == "classification":
        batch = calibration_batch(model.shape, seed)
    else:  # large inputs: few images x many pixels suffice
        images = np.random.default_rng(seed + 1).uniform(-1, 1, size=(model.calibration_images, *model.shape[1:]))
        batch = mx.nd.array(images.astype(np.float32))
    calibrate_in_inference(net, batch, rng, unit_convolutions=model.unit_convolutions)
    if model.task == "classification":
        last = _last_weighted(net)
        factor = LOGIT_STD / float(net(batch).asnumpy().std())
        last.weight.set_data(last.weight.data() * factor)
        if getattr(last, "bias", None) is not None:
            last.bias.set_data(last.bias.data() * factor)
    net.hybridize()
    net(mx.nd.zeros(model.shape))
    mx.nd.waitall()
    return net


def export(model: CorpusModel, folder: Path) -> tuple[Path, Path]:
    """Build ``model`` and save it as ``NAME-symbol.json`` + ``NAME-0000.params`` in ``folder``; for
    outputs compared element by element also ``NAME-float32.json``: what float32 itself costs on the
    verification input (MXNet float32 vs float64), the floor any conversion's error sits on."""
    net = build_network(model)
    folder.mkdir(parents=True, exist_ok=True)
    net.export(str(folder / model.name), epoch=0)
    if model.task in DENSE_TASKS:  # detections after NMS/top-k are not compared element by element
        from tests.support.zoo_models import float32_error, symbol_params, verification_inputs

        symbol, params = symbol_params(net)
        if isinstance(symbol, (list, tuple)):  # several heads (segmentation's auxiliary output)
            symbol = sys.modules["mxnet"].sym.Group(list(symbol))
        try:
            error: Optional[float] = float32_error(symbol, params, verification_inputs(model.shape, SEED))
        except Exception as exc:  # an op without float64 support: the column stays empty
            log.warning("%s: float64 reference failed: %s", model.name, exc)
            error = None
        (folder / f"{model.name}-float32.json").write_text(json.dumps({"float32_error": error}) + "\n")
    return folder / f"{model.name}-symbol.json", folder / f"{model.name}-0000.params"


# --- driving the CLI (runs in the parent process, no MXNet) ---------------------------------------

@dataclass
class Result:
    """What one model's build + conversion gave: docs/MODEL_ZOO.md has one row per result."""

    name: str
    task: str
    shape: str
    opset: str
    exit_code: Optional[int]
    ok: bool
    max_rel: Optional[float]
    convert_seconds: Optional[float]
    build_seconds: Optional[float]
    reason: str = ""
    json_ok: Optional[bool] = None
    float32_error: Optional[float] = None  # MXNet float32 vs float64, relative to scale (see export)
    note: str = ""  # the verification's note when MXNet's own sensitivity widened the bound


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    return env


def _last_line(text: str) -> str:
    noise = re.compile(r"\.py:\d+: \w*Warning:|^\s*warnings\.warn\(")  # Python's warnings: two lines each
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not noise.search(ln)]
    return lines[-1][:300] if lines else ""


def build_in_subprocess(model: CorpusModel, folder: Path) -> tuple[Optional[str], float]:
    """Export ``model`` into ``folder`` in a fresh process; (error line or None, seconds)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "tests.support.gluon_corpus", "build", model.name, str(folder)]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=model.timeout_s)
    except subprocess.TimeoutExpired:
        return f"build timed out after {model.timeout_s} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return f"build failed: {_last_line(proc.stderr) or proc.returncode}", seconds
    return None, seconds


def cli_command(model: CorpusModel, folder: Path) -> list[str]:
    """The x2onnx command a user would type for ``model`` (default flags, plus --verify-json)."""
    cmd = [sys.executable, "-m", "x2onnx.cli", "mxnet", str(folder / f"{model.name}-symbol.json"),
           str(folder / f"{model.name}-0000.params"), "--input-shape", f"data:{model.shape_text}",
           "-o", str(folder / f"{model.name}.onnx"), "--verify-json", str(folder / f"{model.name}.json")]
    if model.opset is not None:
        cmd += ["--opset", str(model.opset)]
    return cmd


def worst_max_rel(report: dict[str, Any]) -> Optional[float]:
    """The largest element-wise error relative to its output's scale in an x2onnx ``--verify-json``
    report (``comparison.worst_max_rel``; detections matched row by row do not enter it)."""
    comparison = report.get("comparison") or {}
    value = comparison.get("worst_max_rel")
    if value is None:
        values = [o["max_rel"] for o in comparison.get("outputs", [])
                  if o.get("compared_as") == "elements" and o.get("max_rel") is not None]
        value = max(values, key=float) if values else None
    return None if value is None else float(value)  # "inf"/"nan" strings too


def convert(model: CorpusModel, folder: Path) -> Result:
    """Build ``model`` and run the x2onnx CLI on it, each in its own subprocess."""
    opset = str(model.opset) if model.opset is not None else "default"
    result = Result(model.name, model.task, model.shape_text, opset, None, False, None, None, None)
    (folder / f"{model.name}-float32.json").unlink(missing_ok=True)
    error, result.build_seconds = build_in_subprocess(model, folder)
    if error:
        result.reason = error
        return result
    float32_path = folder / f"{model.name}-float32.json"
    if float32_path.exists():
        result.float32_error = json.loads(float32_path.read_text())["float32_error"]
    json_path = folder / f"{model.name}.json"
    json_path.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cli_command(model, folder), cwd=REPO, env=_env(), capture_output=True, text=True,
                              timeout=model.timeout_s)
    except subprocess.TimeoutExpired:
        result.convert_seconds = time.perf_counter() - start
        result.reason = f"x2onnx timed out after {model.timeout_s} s"
        return result
    result.convert_seconds = time.perf_counter() - start
    result.exit_code = proc.returncode
    if json_path.exists():
        report = json.loads(json_path.read_text())
        result.json_ok = bool(report.get("ok"))
        result.max_rel = worst_max_rel(report)
        result.note = "; ".join((report.get("comparison") or {}).get("notes", []))
    result.ok = proc.returncode == 0 and bool(result.json_ok)
    if not result.ok:
        result.reason = _last_line(proc.stderr + "\n" + proc.stdout) or f"exit code {proc.returncode}"
    return result


# --- the report ----------------------------------------------------------------------------------

def _fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown(results: Sequence[Result]) -> str:
    """docs/MODEL_ZOO.md: how to regenerate it, then one row per model."""
    passed = sum(r.ok for r in results)
    lines = [
        "# GluonCV model corpus",
        "",
        "Generated by `scripts/build_corpus.py` (do not edit by hand). Regenerate with",
        "",
        "```",
        "X2ONNX_MODELS_DIR=... python scripts/build_corpus.py            # every model, resuming",
        "python scripts/build_corpus.py --force resnet18_v1b             # one model again",
        "```",
        "",
        "Each GluonCV 0.10/0.11 model is built with seeded weights (He init, measured BatchNorm statistics; see",
        "`tests/support/gluon_corpus.py`), exported by MXNet (`hybridize()`, `export()`), and converted by the",
        "real CLI with its default flags (onnx-simplifier, verification against MXNet's plain executor on seeded",
        "inputs uniform in [-1, 1]):",
        "",
        "```",
        "x2onnx mxnet NAME-symbol.json NAME-0000.params --input-shape data:SHAPE -o NAME.onnx --verify-json NAME.json",
        "```",
        "",
        "*max error / scale* is the largest element-wise difference from MXNet divided by that output's largest",
        "magnitude, over every output compared element by element (detections after NMS are matched row by row",
        "and do not enter it). *float32 floor* is what float32 itself costs on the same input: MXNet's float32",
        "output against its float64 output of the same graph, relative to scale; a conversion's error at about",
        "that level is rounding. *time* is the CLI's wall time (export, simplify, verify). A passing model's",
        "*reason* column holds the verification's note when MXNet's own output moved under a one-part-in-a-million",
        "input change (e.g. NMS ties) and the bound was widened by that much.",
        "",
        f"**{passed} of {len(results)} models pass.**",
        "",
        "| model | task | input shape | exporter / opset | result | max error / scale | float32 floor | time (s) | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        exporter = f"x2onnx mxnet / {r.opset}"
        status = "pass" if r.ok else f"FAIL (exit {r.exit_code})" if r.exit_code is not None else "FAIL"
        reason = (r.reason or r.note).replace("|", "\\|")
        lines.append(f"| {r.name} | {r.task} | {r.shape} | {exporter} | {status} | {_fmt(r.max_rel, '.2g')} | "
                     f"{_fmt(r.float32_error, '.2g')} | "
                     f"{_fmt(r.convert_seconds, '.1f')} | {reason} |")
    return "\n".join(lines) + "\n"


def load_results(folder: Path, names: Sequence[str]) -> list[Result]:
    results = []
    for name in names:
        path = folder / name / "result.json"
        if path.exists():
            results.append(Result(**json.loads(path.read_text())))
    return results


def run_corpus(folder: Path, names: Sequence[str], *, force: bool = False) -> list[Result]:
    """Convert every model in ``names`` not already done in ``folder`` (each keeps its result.json)."""
    for name in names:
        model = BY_NAME[name]
        path = folder / name / "result.json"
        if path.exists() and not force:
            log.info("%s: already done (%s)", name, path)
            continue
        log.info("%s: building and converting", name)
        result = convert(model, folder / name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(result), indent=2) + "\n")
        log.info("%s: %s %s", name, "pass" if result.ok else "FAIL", result.reason)
    return load_results(folder, [m.name for m in CORPUS])


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Build one GluonCV corpus model (torch hidden).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build")
    build.add_argument("name", choices=sorted(BY_NAME))
    build.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    export(BY_NAME[args.name], args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
