"""Real quantized models converted with ``onnx2x torch`` defaults and compared with onnxruntime.

Producers: a small hand-written CNN and a small BERT (transformers config, random weights),
exported by ``torch.onnx.export`` (TorchScript exporter), then quantized by onnxruntime's tools:
``quantize_dynamic``, ``quantize_static`` in QOperator and QDQ formats (per tensor and per channel,
uint8 and int8), ``MatMulNBitsQuantizer`` (4-bit weights), and onnxruntime's optimizer (which
fuses dynamic quantization into DynamicQuantizeMatMul / MatMulIntegerToFloat), and onnxruntime's
transformer optimizer followed by ``quantize_dynamic`` (QAttention, QEmbedLayerNormalization).

How outputs are judged:
* QOperator, dynamic, 4-bit and optimized models run the same integer arithmetic in both; the
  outputs (float, after the last DequantizeLinear or a float tail) must match within float32
  rounding (``atol = 1e-5 * max|reference|``), allowing an element to be off by one quantization step
  of its DequantizeLinear (:func:`tests.support.quant_cases.assert_within_one_step`).
* QDQ models: onnxruntime does not run the QDQ graph as written; it fuses DequantizeLinear -> op ->
  QuantizeLinear into integer kernels, whose rounding differs from the float simulation the graph
  defines. onnx2x computes the graph as written, so (1) against onnxruntime with its optimizations
  off (the graph as written) outputs match within float32 rounding; (2) against onnxruntime's fused
  execution, one-step differences at rounding boundaries appear inside the network and propagate:
  the outputs must stay within ``QDQ_FUSED_MAX_STEPS`` steps of the output's quantization
  (``QDQ_FUSED_MAX_RANGE_SHARE`` of the range for outputs not dequantized from one scale), with at
  most ``QDQ_FUSED_MAX_FRACTION`` of the elements off at all. Measured (seeds 0-2): the CNN's 10
  softmax outputs differ by exactly one step in 10-40% of the elements; BERT's agree bit for bit on
  these inputs, and by at most 1.2 steps in 2.7% of the elements on others.

uint8 x int8 models are quantized with ``reduce_range=True``: without it onnxruntime's AVX2 kernels
(no VNNI) saturate pair sums at int16 and differ from the exact result by many steps (see
test_onnx2x_quantized.py::test_qlinear_conv_full_range_is_exact).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from onnx2x.torch import convert
from onnx2x.torch.verify import locate_divergence
from tests.support import quant_models as qm
from tests.support.quant_cases import assert_within_one_step, ort_session

# QDQ against onnxruntime's fused integer execution: bound on |difference| in steps of the output's
# quantization (CNN) or as a share of the output's range (BERT's float outputs), and on the share
# of elements that differ at all
QDQ_FUSED_MAX_STEPS = 2
QDQ_FUSED_MAX_RANGE_SHARE = 0.02
QDQ_FUSED_MAX_FRACTION = 0.5
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def floats(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("quant_models")
    return {"cnn": qm.export_cnn(folder / "cnn.onnx"), "bert": qm.export_bert(folder / "bert.onnx")}


def _feeds(kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    return qm.cnn_feeds(seed) if kind == "cnn" else qm.bert_feeds(seed)


def _output_steps(path: Path) -> list[Optional[float]]:
    """Per graph output: the scale of the per-tensor DequantizeLinear producing it, else None."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    steps = []
    for out in model.graph.output:
        node = producer.get(out.name)
        scale = inits.get(node.input[1]) if node is not None and node.op_type == "DequantizeLinear" else None
        steps.append(float(scale) if scale is not None and scale.size == 1 else None)
    return steps


def _run_converted(path: Path, kind: str) -> list[tuple[dict, list[np.ndarray]]]:
    """(feeds, outputs of the module ``onnx2x torch`` defaults make) for each seed in SEEDS."""
    gm = convert(str(path))
    runs = []
    for seed in SEEDS:
        feeds = _feeds(kind, seed)
        with torch.no_grad():
            out = gm(*[torch.from_numpy(feeds[n]) for n in gm.onnx_input_names])
        runs.append((feeds, [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]))
    return runs


def _judge_exact_arithmetic(path: Path, kind: str) -> None:
    session = ort_session(onnx.load(str(path)))
    steps = _output_steps(path)
    for feeds, got in _run_converted(path, kind):
        _judge_one(got, session.run(None, feeds), steps)


def _judge_one(got: list[np.ndarray], expected: list[np.ndarray], steps: list[Optional[float]]) -> None:
    assert len(got) == len(expected)
    for g, e, step in zip(got, expected, steps):
        tol = 1e-5 * float(np.abs(e).max())
        if step is None:
            np.testing.assert_allclose(g, e, rtol=0, atol=tol)
        else:
            assert_within_one_step(g, e, step=step, float_slack=tol / step)


SLOW = pytest.mark.slow
CNN_STATIC = [  # (format, per_channel, activation, weight, reduce_range)
    pytest.param("qoperator", False, "QUInt8", "QUInt8", False),
    pytest.param("qoperator", True, "QUInt8", "QInt8", True, marks=SLOW),
    pytest.param("qoperator", True, "QInt8", "QInt8", False),
    pytest.param("qdq", False, "QUInt8", "QUInt8", False, marks=SLOW),
    pytest.param("qdq", True, "QUInt8", "QInt8", True),
    pytest.param("qdq", True, "QInt8", "QInt8", False, marks=SLOW),
]


@pytest.mark.parametrize("method,per_channel,activation,weight,reduce_range",
                         [c for c in CNN_STATIC if c.values[0] == "qoperator"])
def test_cnn_qoperator(floats, tmp_path, method, per_channel, activation, weight, reduce_range):
    path = qm.quantize(floats["cnn"], tmp_path / "q.onnx", method, per_channel=per_channel, activation=activation,
                       weight=weight, reduce_range=reduce_range, feeds_of_seed=qm.cnn_feeds)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QLinearConv", "QLinearAdd", "QLinearConcat", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearSigmoid",
            "QLinearMul", "QLinearGlobalAveragePool", "QGemm", "QLinearSoftmax"} <= ops, ops
    _judge_exact_arithmetic(path, "cnn")


@pytest.mark.parametrize("weight,per_channel", [pytest.param("QUInt8", False, marks=SLOW), ("QInt8", True)])
def test_cnn_dynamic_and_optimized(floats, tmp_path, weight, per_channel):
    """quantize_dynamic (ConvInteger, MatMulInteger), then onnxruntime's fused form of it."""
    path = qm.quantize(floats["cnn"], tmp_path / "dyn.onnx", "dynamic", weight=weight, per_channel=per_channel,
                       reduce_range=weight == "QInt8")
    _judge_exact_arithmetic(path, "cnn")
    fused = qm.ort_optimized(path, tmp_path / "dyn_opt.onnx")
    assert "DynamicQuantizeMatMul" in {n.op_type for n in onnx.load(str(fused)).graph.node}
    _judge_exact_arithmetic(fused, "cnn")


def _judge_qdq(path: Path, kind: str) -> dict[str, float]:
    """QDQ: float32 rounding against the graph as written; bounded steps against the fused execution."""
    model = onnx.load(str(path))
    written, fused = ort_session(model, optimized=False), ort_session(model)
    steps = _output_steps(path)
    figures: dict[str, float] = {}
    for feeds, got in _run_converted(path, kind):
        _judge_one(got, written.run(None, feeds), steps)
        _judge_fused(got, fused.run(None, feeds), steps, figures)
    return figures


def _judge_fused(got: list[np.ndarray], fused: list[np.ndarray], steps: list[Optional[float]],
                 figures: dict[str, float]) -> None:
    for g, f, step in zip(got, fused, steps):
        tol = 1e-5 * float(np.abs(f).max())
        diff = np.abs(g.astype(np.float64) - f)
        if step is not None:
            assert diff.max() <= QDQ_FUSED_MAX_STEPS * step * (1 + 1e-4), (diff.max(), step)
        else:
            span = float(f.max() - f.min())
            assert diff.max() <= QDQ_FUSED_MAX_RANGE_SHARE * span, (diff.max(), span)
        fraction = float(np.mean(diff > tol))
        assert fraction <= QDQ_FUSED_MAX_FRACTION, fraction
        figures[f"max_diff_{len(figures)}"] = float(diff.max())


@pytest.mark.parametrize("method,per_channel,activation,weight,reduce_range",
                         [c for c in CNN_STATIC if c.values[0] == "qdq"])
def test_cnn_qdq(floats, tmp_path, method, per_channel, activation, weight, reduce_range):
    path = qm.quantize(floats["cnn"], tmp_path / "q.onnx", method, per_channel=per_channel, activation=activation,
                       weight=weight, reduce_range=reduce_range, feeds_of_seed=qm.cnn_feeds)
    _judge_qdq(path, "cnn")


@pytest.mark.parametrize("method,per_channel", [pytest.param("qoperator", False, marks=SLOW), ("qoperator", True),
                                                ("dynamic", False), pytest.param("dynamic", True, marks=SLOW)])
def test_bert_qoperator_and_dynamic(floats, tmp_path, method, per_channel):
    path = qm.quantize(floats["bert"], tmp_path / "q.onnx", method, per_channel=per_channel,
                       reduce_range=True, feeds_of_seed=qm.bert_feeds)
    _judge_exact_arithmetic(path, "bert")
    if method == "dynamic":
        fused = qm.ort_optimized(path, tmp_path / "opt.onnx")
        ops = {n.op_type for n in onnx.load(str(fused)).graph.node}
        assert {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} <= ops, ops
        _judge_exact_arithmetic(fused, "bert")


@pytest.mark.parametrize("weight,per_channel", [("QInt8", False), pytest.param("QUInt8", True, marks=SLOW)])
def test_bert_transformer_optimized_then_quantized(tmp_path, weight, per_channel):
    """onnxruntime's transformer optimizer on a BERT exported as the transformers docs show (eager
    attention, dynamic batch and length), then quantize_dynamic: the fused Attention and
    EmbedLayerNormalization become QAttention and QEmbedLayerNormalization (8-bit tables). Judged
    on padded batches of other sizes than the export's."""
    from tests.support import encoder_corpus as ec

    source = ec.export(ec.encoder("bert"), tmp_path / "bert.onnx", opset=17)
    fused = qm.transformer_optimized(source, tmp_path / "opt.onnx", num_heads=ec.HEADS, hidden_size=ec.HIDDEN)
    # the quantizer cannot infer types through com.microsoft ops; its error message says to name one
    path = qm.quantize(fused, tmp_path / "opt_q.onnx", "dynamic", weight=weight, per_channel=per_channel,
                       reduce_range=weight == "QInt8", extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QAttention", "QEmbedLayerNormalization"} <= ops, ops
    gm = convert(str(path))
    model = onnx.load(str(path))
    session = ort_session(model)
    for batch, length in ((3, 11), (1, 5)):
        ids, mask = ec.sample("bert", batch, length, torch.Generator().manual_seed(batch), pad=2 if batch > 1 else 0)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        expected = session.run(None, feeds)[0]
        with torch.no_grad():
            got = gm(ids, mask).numpy()
        scale = float(np.abs(expected).max())
        if np.abs(got - expected).max() <= 1e-5 * scale:
            continue
        # a DynamicQuantizeLinear input one ulp off a rounding boundary moves one step: then every node
        # must still agree with onnxruntime on its own inputs, and the outputs stay close
        assert np.abs(got - expected).max() <= 1e-2 * scale
        assert locate_divergence(model, gm, feeds).rounding_only


@pytest.mark.parametrize("per_channel", [pytest.param(False, marks=SLOW), True])
def test_bert_qdq(floats, tmp_path, per_channel):
    path = qm.quantize(floats["bert"], tmp_path / "q.onnx", "qdq", per_channel=per_channel, reduce_range=True,
                       feeds_of_seed=qm.bert_feeds)
    _judge_qdq(path, "bert")


@pytest.mark.parametrize("block_size,symmetric,accuracy_level", [pytest.param(32, True, None, marks=SLOW), (32, False, 4),
                                                                 pytest.param(128, False, None, marks=SLOW)])
def test_bert_4bit_weights(floats, tmp_path, block_size, symmetric, accuracy_level):
    path = qm.quantize_4bit(floats["bert"], tmp_path / "q4.onnx", block_size=block_size, symmetric=symmetric,
                            accuracy_level=accuracy_level)
    assert "MatMulNBits" in {n.op_type for n in onnx.load(str(path)).graph.node}
    _judge_exact_arithmetic(path, "bert")


# --- real architectures through quantize_static and the CLI --------------------------------------

def _quantize_light(name: str, folder: Path, fmt: str, per_channel: bool) -> Path:
    """A light model-zoo graph (seeded weights of the real size, dynamic batch) through
    ``quantize_static`` as its docs show, calibrated on two seeded images; ``reduce_range`` as
    they advise for CPUs without VNNI, where onnxruntime's uint8 x int8 kernels saturate (see
    the module docstring): the comparison below is bit for bit on every CPU."""
    from tests.support.light_weights import light_feed, load_light

    model = load_light(name, dynamic_batch=True)
    source = folder / f"{name}.onnx"
    onnx.save(model, str(source))
    feed_name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    return qm.quantize(source, folder / f"{name}_{fmt}{'_pc' if per_channel else ''}.onnx",
                       "qoperator" if fmt == "qop" else "qdq", per_channel=per_channel, reduce_range=True,
                       feeds_of_seed=lambda seed: {feed_name: light_feed(model, 1, seed)})


@pytest.mark.parametrize("name,fmt,per_channel", [
    ("squeezenet", "qop", False),
    ("shufflenet", "qop", True),
    pytest.param("inception_v2", "qop", False, marks=pytest.mark.slow),
    pytest.param("densenet121", "qop", True, marks=pytest.mark.slow),
    pytest.param("squeezenet", "qdq", False, marks=pytest.mark.slow),
    pytest.param("inception_v2", "qdq", False, marks=pytest.mark.slow),
])
def test_quantized_light_model_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, name: str, fmt: str,
                                               per_channel: bool) -> None:
    """`onnx2x torch` with default flags on what a user's quantize_static run writes: it verifies
    against onnxruntime and exits 0, and the written artifact (the saved .py importing only torch)
    computes onnxruntime's outputs at another batch size. squeezenet's QOperator graph is the
    case of an opset-11 Softmax whose axis onnxruntime's quantizer drops (see QLinearSoftmax)."""
    from onnx2x.cli import main
    from onnx2x.torch import artifact
    from tests.support.light_weights import light_feed

    path = _quantize_light(name, tmp_path, fmt, per_channel)
    out = tmp_path / "out" / f"{path.stem}.pt"
    assert main(["torch", str(path), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "matches onnxruntime" in printed.out + printed.err or "accepted" in printed.out + printed.err
    net = artifact.load(out)
    x = light_feed(onnx.load(str(path)), 3, seed=7)
    session = ort_session(onnx.load(str(path)), optimized=fmt == "qop")  # QDQ: the float definition
    expected = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        got = net(torch.from_numpy(x))
    for g, e, step in zip(got if isinstance(got, tuple) else (got,), expected, _output_steps(path)):
        if fmt == "qop":  # onnxruntime's integer kernels, which the converted ops reproduce
            np.testing.assert_array_equal(g.numpy(), e)
        else:  # float convolutions summed in another order: a QuantizeLinear may round the other way
            diff = np.abs(g.numpy() - e)
            assert step is not None and diff.max() <= QDQ_FUSED_MAX_STEPS * step * (1 + 1e-4), (diff.max(), step)
            assert np.mean(diff > 1e-6) <= 0.01
