"""Real quantized models for the tests: a small CNN and a small BERT exported by
``torch.onnx.export`` (TorchScript exporter), then run through onnxruntime's own quantization tools
(``quantize_dynamic``, ``quantize_static`` in QOperator and QDQ formats, ``MatMulNBitsQuantizer``)
and, for the fused com.microsoft ops, through onnxruntime's graph optimizer.

Everything is seeded and built in a temporary folder; nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import onnx
import torch

CNN_INPUT = (1, 3, 16, 16)
BERT_SEQ = 8
BERT_VOCAB = 100


class SmallCNN(torch.nn.Module):
    """conv/bn/relu, max-pool, a residual add, concat, leaky-relu, average pools, sigmoid-gated mul,
    global pooling, linear and softmax: what the QOperator quantizer turns into QLinear* ops."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = torch.nn.Conv2d(8, 8, 1)
        self.c4 = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.nn.functional.max_pool2d(y, 2)
        a = torch.relu(self.c2(y)) + self.c3(y)
        z = torch.cat([a, y], 1)
        z = torch.nn.functional.leaky_relu(self.c4(z), 0.1)
        z = torch.nn.functional.avg_pool2d(z, 2)
        z = torch.sigmoid(z) * z
        z = torch.nn.functional.adaptive_avg_pool2d(z, 1).flatten(1)
        return torch.softmax(self.fc(z), -1)


def export_cnn(path: Path) -> Path:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.b1.running_mean.uniform_(-0.5, 0.5)
        model.b1.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(model, torch.randn(*CNN_INPUT), str(path), opset_version=13, dynamo=False,
                      input_names=["x"], output_names=["probs"])
    return path


@contextlib.contextmanager
def _without_torchvision() -> Iterator[None]:
    """transformers probes torchvision, whose CPU build here cannot be imported: hide it."""
    added = "torchvision" not in sys.modules
    if added:
        sys.modules["torchvision"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if added and sys.modules.get("torchvision", 0) is None:
            del sys.modules["torchvision"]


class _BertOutputs(torch.nn.Module):
    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return out.last_hidden_state, out.pooler_output


def export_bert(path: Path) -> Path:
    """A 2-layer BertModel (hidden 32, 4 heads) from a config, random weights, seeded."""
    with _without_torchvision():
        from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=BERT_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32)
    model = _BertOutputs(BertModel(config).eval()).eval()
    ids = torch.randint(0, BERT_VOCAB, (1, BERT_SEQ))
    torch.onnx.export(model, (ids, torch.ones(1, BERT_SEQ, dtype=torch.int64)), str(path), opset_version=14,
                      dynamo=False, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooler_output"])
    return path


def cnn_feeds(seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal(CNN_INPUT).astype(np.float32)}


def bert_feeds(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((1, BERT_SEQ), dtype=np.int64)
    mask[0, BERT_SEQ - 2:] = 0
    return {"input_ids": rng.integers(0, BERT_VOCAB, (1, BERT_SEQ)).astype(np.int64), "attention_mask": mask}


class _Calibration:
    """A seeded onnxruntime CalibrationDataReader over a few batches of feeds."""

    def __init__(self, feeds_of_seed, count: int = 4) -> None:
        self._batches = iter([feeds_of_seed(100 + i) for i in range(count)])

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - the quantizer does not rewind here
        pass


def quantize(source: Path, target: Path, method: str, *, per_channel: bool = False, activation: str = "QUInt8",
             weight: str = "QInt8", reduce_range: bool = False, feeds_of_seed=None,
             extra_options: Optional[dict] = None) -> Path:
    """``method``: 'dynamic', 'qoperator' or 'qdq' (onnxruntime.quantization, defaults otherwise)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    class Reader(_Calibration, CalibrationDataReader):
        pass

    if method == "dynamic":
        quantize_dynamic(str(source), str(target), per_channel=per_channel, reduce_range=reduce_range,
                         weight_type=getattr(QuantType, weight), extra_options=extra_options)
    else:
        fmt = QuantFormat.QOperator if method == "qoperator" else QuantFormat.QDQ
        quantize_static(str(source), str(target), Reader(feeds_of_seed), quant_format=fmt, per_channel=per_channel,
                        reduce_range=reduce_range, activation_type=getattr(QuantType, activation),
                        weight_type=getattr(QuantType, weight))
    return target


def quantize_4bit(source: Path, target: Path, *, block_size: int = 32, symmetric: bool = True,
                  accuracy_level: Optional[int] = None) -> Path:
    """MatMul weights to MatMulNBits with onnxruntime's MatMulNBitsQuantizer (default RTN algorithm)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=block_size, is_symmetric=symmetric,
                                     accuracy_level=accuracy_level)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return target


# fusions into float com.microsoft ops (another family of converters), kept off here
FLOAT_FUSIONS = ["SkipLayerNormFusion", "LayerNormFusion", "LayerNormFusionL1", "LayerNormFusionL2", "SimplifiedLayerNormFusion", "GeluFusion",
                 "GeluFusionL1", "GeluFusionL2", "FastGeluFusion", "BiasGeluFusion", "QuickGeluFusion", "MatMulScaleFusion", "AttentionFusion",
                 "EmbedLayerNormFusion", "BiasSoftmaxFusion", "BiasDropoutFusion", "GemmActivationFusion",
                 "MatMulAddFusion", "ConvActivationFusion", "ConvAddActivationFusion", "NhwcTransformer"]


def ort_optimized(source: Path, target: Path) -> Path:
    """The model as onnxruntime's extended graph optimizer leaves it (fused com.microsoft ops such as
    DynamicQuantizeMatMul and MatMulIntegerToFloat), saved as a file, as users save them; the
    fusions into float com.microsoft ops (:data:`FLOAT_FUSIONS`) are disabled."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(target)
    opts.log_severity_level = 3
    ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"], disabled_optimizers=FLOAT_FUSIONS)
    return target


def transformer_optimized(source: Path, target: Path, *, num_heads: int, hidden_size: int) -> Path:
    """BERT as onnxruntime's transformer optimizer rewrites it (Attention, EmbedLayerNormalization,
    SkipLayerNormalization, BiasGelu), saved as a file: what its docs have users quantize next."""
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size).save_model_to_file(
        str(target))
    return target

